"""Restart sampling (Xu et al. 2023, Alg. 1): a Heun PF-ODE solve along the main grid, and
after the main step that lands on each restart interval's lower end t_min, K repetitions of

    renoise:  y(t_max) = y(t_min) + sqrt(s_max^2 - s_min^2) z     (y = x/alpha, s = sigma/alpha),
    ODE back: n Heun steps from t_max to t_min on a Karras (rho = 7) grid.

The whole op list is flattened at build time into static per-step tables: a non-monotone
sequence of Heun steps, the re-noising a pre-step noise of the first step of each backward
path (``ode.rk.heun_steps``). Without restarts it is exactly ``ode.rk.heun``.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_grid
from samplers.schedules import Schedule
from samplers.ode.rk import Points, heun_steps


def _check_interval(schedule: Schedule, grid: TimeGrid, interval):
    """(main-grid index of t_min, t_max, K, n) of one ``(t_min, t_max, K, n_steps)`` interval."""
    try:
        t_min, t_max, k, n = interval
    except (TypeError, ValueError):
        raise ValueError(f"each restart interval must be a tuple (t_min, t_max, K, n_steps), "
                         f"got {interval!r}") from None
    for name, v in (("K", k), ("n_steps", n)):
        if not isinstance(v, (int, np.integer)) or v < (0 if name == "K" else 1):
            raise ValueError(f"restart interval {name} must be an integer >= {0 if name == 'K' else 1}, got {v!r}")
    # t_min snaps to the nearest main-grid point with sigma > 0 that some main step lands on.
    landing = np.flatnonzero(grid.sigma[1:] > 0) + 1
    if len(landing) == 0:
        raise ValueError("restart needs a main grid point with sigma > 0 after the first one")
    j = int(landing[np.argmin(np.abs(grid.t[landing] - float(t_min)))])
    schedule.check_t(np.array([float(t_max)]), "restart t_max")
    if not float(schedule.sigma(float(t_max)) / schedule.alpha(float(t_max))) > grid.sigma[j] / grid.alpha[j]:
        raise ValueError(f"restart t_max ({t_max}) must be noisier than t_min (snapped to grid time {grid.t[j]})")
    return j, float(t_max), int(k), int(n)


def restart(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, intervals, s_noise: float = 1.0) -> Sampler:
    """Restart sampler: Heun on ``grid`` plus ``intervals`` = [(t_min, t_max, K, n_steps), ...]
    in the schedule's time variable (t_min snapped to the nearest main-grid point); its NFE is
    Heun's plus 2 K n_steps per interval."""
    check_grid(grid)
    if not np.isscalar(s_noise) or not s_noise >= 0:
        raise ValueError(f"s_noise must be a number >= 0, got {s_noise!r}")
    restarts = {}
    for interval in intervals:
        j, t_max, k, n = _check_interval(schedule, grid, interval)
        if j in restarts:
            raise ValueError(f"two restart intervals snap to the same grid time {grid.t[j]}")
        restarts[j] = (t_max, k, n)
    pts = Points.of(grid)
    before, start, end = [], [], []
    for i in range(grid.num_steps):
        main = pts.take(slice(i, i + 1))
        before.append(main)
        start.append(main)
        end.append(pts.take(slice(i + 1, i + 2)))
        if i + 1 in restarts:
            t_max, k, n = restarts[i + 1]
            path = Points.of(time_grid(schedule, n, "karras", t_start=t_max, t_end=grid.t[i + 1]))
            for _ in range(k):
                before.append(pts.take(slice(i + 1, i + 2)))
                before.extend(path.take(slice(m, m + 1)) for m in range(1, n))
                start.append(path.take(slice(0, n)))
                end.append(path.take(slice(1, n + 1)))
    return heun_steps(schedule, predicts, Points.cat(start), Points.cat(end), before=Points.cat(before), s_noise=s_noise)

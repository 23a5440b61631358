"""Time grids: the N+1 points t_0 > t_1 > ... > t_N a sampler steps through.

A ``TimeGrid`` holds, per point, the model time ``t`` and the schedule's
``alpha``, ``sigma`` and ``lam`` = log(alpha/sigma) in float64 numpy. Its last
point may be the clean data itself (``final="zero"``: alpha=1, sigma=0,
lam=+inf), which samplers reach but never evaluate the model at.

Spacings:

* ``uniform``   -- uniform in t.
* ``logsnr``    -- uniform in lambda (DPM-Solver's ``logSNR``).
* ``quadratic`` -- uniform in sqrt(t) (DPM-Solver's ``time_quadratic``).
* ``karras``    -- Karras et al. (2022) rho-spacing in sigma/alpha.
* ``linspace``, ``leading``, ``trailing`` -- diffusers' integer spacings of a
  discrete schedule (Lin et al. 2023, Table 2), as its multistep schedulers
  build them.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from samplers.schedules import Schedule, VPDiscrete

CONTINUOUS_SPACINGS = ("uniform", "logsnr", "quadratic", "karras")
DISCRETE_SPACINGS = ("linspace", "leading", "trailing")
SPACINGS = CONTINUOUS_SPACINGS + DISCRETE_SPACINGS
FINALS = (None, "zero", "last")


@dataclasses.dataclass(frozen=True, eq=False)
class TimeGrid:
    t: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray
    lam: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.t) - 1

    @property
    def final_zero(self) -> bool:
        return bool(self.sigma[-1] == 0.0)

    def __post_init__(self):
        if len(self.t) < 2:
            raise ValueError("a time grid needs at least 2 points (num_steps >= 1)")


def _from_t(schedule: Schedule, t: np.ndarray, zero: bool = False) -> TimeGrid:
    """The grid of model times ``t``, then (``zero``) a last point at the clean data (alpha=1, sigma=0)."""
    t = np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):  # lambda = +inf where sigma = 0 (e.g. flow at t = 0)
        arrays = [t, schedule.alpha(t), schedule.sigma(t), schedule.lambda_(t)]
    if zero:
        arrays = [np.concatenate([a, [v]]) for a, v in zip(arrays, (t[-1], 1.0, 0.0, np.inf))]
    return TimeGrid(*arrays)


def _discrete_timesteps(schedule: VPDiscrete, n: int, spacing: str, steps_offset: int) -> np.ndarray:
    total = schedule.num_train_timesteps
    if spacing == "linspace":
        return np.linspace(0, total - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = total // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + steps_offset
    ratio = total / n
    return np.arange(total, 0, -ratio).round().astype(np.int64) - 1


def validate_timesteps(schedule: Schedule, timesteps) -> np.ndarray:
    t = np.asarray(timesteps, np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(f"timesteps must be a 1-D array of at least 2 times; got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("timesteps must be finite")
    if not np.all(np.diff(t) < 0):
        raise ValueError("timesteps must be strictly decreasing (from noise to data)")
    schedule.check_t(t)
    return t


def time_grid(
    schedule: Schedule,
    num_steps: int | None = None,
    spacing: str = "logsnr",
    *,
    t_start: float | None = None,
    t_end: float | None = None,
    final: str | None = None,
    timesteps=None,
    rho: float = 7.0,
    steps_offset: int = 0,
) -> TimeGrid:
    """Build the grid of ``num_steps`` steps (``num_steps + 1`` points).

    ``final=None`` ends at ``t_end``; ``"zero"`` adds a last step from ``t_end``
    to sigma=0 (so ``num_steps - 1`` steps are spaced, as diffusers'
    ``final_sigmas_type="zero"``); ``"last"`` ends at the schedule's ``t_min``.
    Discrete spacings take ``num_steps`` integer timesteps and then the final
    point (``"zero"`` by default). ``timesteps`` gives the points explicitly
    (validated: strictly decreasing, inside the schedule's range).
    """
    if final not in FINALS:
        raise ValueError(f"final must be one of {list(FINALS)}, got {final!r}")
    if timesteps is not None:
        return _from_t(schedule, validate_timesteps(schedule, timesteps), final == "zero")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {list(SPACINGS)}, got {spacing!r}")
    if num_steps is None or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    num_steps = int(num_steps)

    if spacing in DISCRETE_SPACINGS:
        if not isinstance(schedule, VPDiscrete):
            raise ValueError(f"spacing {spacing!r} needs the vp_discrete schedule, got {schedule.name!r}")
        final = "zero" if final is None else final
        ts = _discrete_timesteps(schedule, num_steps, spacing, steps_offset).astype(np.float64)
        if final == "zero":
            return _from_t(schedule, ts, zero=True)
        return _from_t(schedule, np.concatenate([ts, [schedule.t_min]]))

    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_t(np.array([t0, t1]), "t_start/t_end")
    if not t0 > t1:
        raise ValueError(f"t_start ({t0}) must be greater than t_end ({t1})")
    n = num_steps - 1 if final == "zero" else num_steps
    if n == 0:
        return _from_t(schedule, np.array([t0]), zero=True)
    if spacing in ("logsnr", "karras") and not np.all(np.isfinite(schedule.lambda_(np.array([t0, t1])))):
        raise ValueError(f"spacing={spacing!r} spaces the log-SNR, which is infinite at t_start={t0:g} or "
                         f"t_end={t1:g} of the {schedule.name} schedule; give t_start/t_end inside it or "
                         f"spacing 'uniform' / 'quadratic'")
    if spacing == "uniform":
        t = np.linspace(t0, t1, n + 1)
    elif spacing == "logsnr":
        lam = np.linspace(schedule.lambda_(t0), schedule.lambda_(t1), n + 1)
        t = schedule.t_from_lambda(lam)
    elif spacing == "quadratic":
        t = np.linspace(np.sqrt(t0), np.sqrt(t1), n + 1) ** 2
    else:  # karras
        s0, s1 = np.exp(-schedule.lambda_(t0)), np.exp(-schedule.lambda_(t1))
        ramp = np.linspace(0.0, 1.0, n + 1)
        s = (s0 ** (1 / rho) + ramp * (s1 ** (1 / rho) - s0 ** (1 / rho))) ** rho
        t = schedule.t_from_lambda(-np.log(s))
    t[0], t[-1] = t0, t1  # exact end points despite round trips through lambda
    return _from_t(schedule, t, final == "zero")

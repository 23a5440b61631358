"""The sampler of an SFD student (Zhou et al. 2024, "Simple and Fast Distillation of Diffusion
Models"): Euler steps on a coarse grid (polynomial rho = 7 by default), the first of them the
analytical first step (AFS) that spends no model call.

In the scale-free variables y = x / alpha, s = sigma / alpha (y = x, s = t on the EDM schedule)
an Euler step is y_{i+1} = y_i + (s_{i+1} - s_i) eps(x_i, t_i). AFS replaces the first eps by the
noise direction of data-free Gaussian data, eps ~ x / sqrt(alpha^2 + sigma^2) (x / sqrt(1 + t^2)
on EDM), which is accurate at the large t_max where x is almost pure noise. This is the authors' code
(github zju-pi/diff-sampler, ``sfd-main/solvers.py``, ``euler_sampler`` with ``afs``:
``d_cur = x_cur / ((1 + t_cur**2).sqrt())``, ``x_next = x_cur + (t_next - t_cur) * d_cur``): the
slope d = (x - D(x)) / t, i.e. the noise direction, is x / sqrt(1 + t^2) -- not the data estimate
x0 (D(x) = x - t x / sqrt(1 + t^2)). A grid of n steps therefore costs n - 1 model calls
(``registry.build("sfd", schedule, nfe)`` uses nfe + 1 steps).
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_grid
from samplers.ode.rk import euler
from samplers.schedules import Schedule


def sfd(schedule: Schedule, grid: TimeGrid, predicts: str = "x0") -> Sampler:
    """Euler on ``grid`` with the analytical first step (``grid.num_steps - 1`` model calls, >= 1)."""
    check_grid(grid)
    if grid.num_steps < 2:
        raise ValueError(f"an SFD sampler needs a grid of >= 2 steps (the first is analytical), got "
                         f"{grid.num_steps}")
    if grid.alpha[0] <= 0.0:
        raise ValueError(f"the analytical first step needs alpha > 0 at t={grid.t[0]:g} ({schedule.name} schedule)")
    zero = grid.final_zero
    rest = euler(schedule, time_grid(schedule, timesteps=grid.t[1:-1] if zero else grid.t[1:],
                                     final="zero" if zero else None), predicts)
    a0, s0, a1, s1 = grid.alpha[0], grid.sigma[0], grid.alpha[1], grid.sigma[1]
    # y_1 = y_0 + (s_1 - s_0) x_0 / sqrt(a_0^2 + s_0^2) in y = x / alpha, s = sigma / alpha: x_1 = gain x_0
    gain = float(a1 * (1.0 / a0 + (s1 / a1 - s0 / a0) / np.sqrt(a0**2 + s0**2)))

    def init(x, key=None, model_fn=None):
        return rest.init(gain * x, key, model_fn)

    return Sampler(init, rest.step, rest.num_steps, rest.nfe, rest.transition)

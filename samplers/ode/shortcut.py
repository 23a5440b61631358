"""Sampling a shortcut model (Frans et al. 2024): Euler steps of size d = 1/steps with the model's
shortcut velocity s(x_t, t, d) on the flow schedule (t = 1 noise, t = 0 data):

    x_{t - d} = x_t - d s(x_t, t, d),   steps in {1, 2, 4, ..., 128}.

The step size reaches the network through its ``model_fn`` (``train.distill.shortcut`` binds
d = 1/steps); the sampler is the velocity Euler step (``samplers.ode.rk``) on the uniform grid,
restricted to the step counts the model was trained for.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid
from samplers.ode.rk import rk
from samplers.schedules import Flow, Schedule

MAX_STEPS = 128  # the finest step size 1/128 of the reference implementation
STEP_COUNTS = tuple(2**k for k in range(8))  # 1, 2, 4, ..., 128


def check_steps(steps) -> int:
    """``steps`` if it is a power of two <= 128, else a ValueError naming the allowed counts."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or int(steps) not in STEP_COUNTS:
        raise ValueError(f"nfe (the number of steps) of a shortcut model must be one of {list(STEP_COUNTS)}, "
                         f"got {steps!r}")
    return int(steps)


def shortcut(schedule: Schedule, grid: TimeGrid, predicts: str = "velocity") -> Sampler:
    """Euler with d = 1/steps from t = 1 to t = 0 on ``grid`` (uniform, a power-of-two number of steps)."""
    check_grid(grid)
    check_steps(grid.num_steps)
    if not isinstance(schedule, Flow):
        raise ValueError(f"a shortcut model lives on the flow schedule, got {schedule.name!r}")
    if predicts != "velocity":
        raise ValueError(f"a shortcut model predicts the velocity: predicts must be 'velocity', got {predicts!r}")
    want = np.linspace(1.0, 0.0, grid.num_steps + 1)
    if not np.allclose(grid.t, want, rtol=0.0, atol=1e-12):
        raise ValueError("a shortcut model steps by d = 1/steps from t = 1 to t = 0: spacing must be 'uniform' "
                         "on the flow schedule with t_min = 0, t_max = 1 and final=None")
    return rk(schedule, grid, predicts, method="euler")

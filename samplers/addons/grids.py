"""The Beta-quantile time grid (Lee et al. 2024, "Beta Sampling is All You Need: Efficient Image
Generation Strategy for Diffusion Models using Stepwise Spectral Analysis", Sec. 4): the N+1 times are
the quantiles of a Beta(a, b) law on [t_end, t_start], dense near both ends for a, b < 1 (the paper's
a = b = 0.6), where the spectrum of x changes most.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import beta as beta_law

from samplers.checks import check_number
from samplers.grids import TimeGrid, time_grid
from samplers.schedules import Schedule


def beta_grid(schedule: Schedule, num_steps: int, a: float = 0.6, b: float = 0.6, *, t_start: float | None = None,
              t_end: float | None = None, final: str | None = None) -> TimeGrid:
    """``num_steps`` steps at the Beta(a, b) quantiles between ``t_start`` and ``t_end`` (the schedule's ends
    by default); ``final="zero"`` adds a last step to sigma = 0 as ``time_grid`` does."""
    a, b = check_number("a", a, 0.0, open_lo=True), check_number("b", b, 0.0, open_lo=True)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if final not in (None, "zero"):
        raise ValueError(f"final must be one of [None, 'zero'], got {final!r}")
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    n = num_steps - 1 if final == "zero" else num_steps
    q = beta_law.ppf(np.linspace(0.0, 1.0, n + 1), a, b)
    t = t0 + q * (t1 - t0)
    t[0], t[-1] = t0, t1 if n else t0
    return time_grid(schedule, timesteps=t, final=final)

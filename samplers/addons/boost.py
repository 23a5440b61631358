"""Boost-and-skip (Kim et al. 2025, "Boost-and-Skip: A Simple Guidance-Free Diffusion for Minority
Generation", Sec. 3): start from variance-boosted noise x ~ N(0, boost^2 I) and skip the first ``skip``
steps of the grid, i.e. run the solver on the grid from its point ``skip`` on. The boost is an
initial-state add-on, the skip a grid change; ``boost=1, skip=0`` is the base solver bit for bit.
"""
from __future__ import annotations

from samplers.addons.core import Addon
from samplers.checks import check_number
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid


def skip_steps(grid: TimeGrid, skip: int) -> TimeGrid:
    """The grid without its first ``skip`` steps (0 <= skip < num_steps)."""
    check_grid(grid)
    if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip < grid.num_steps:
        raise ValueError(f"skip must be an integer in [0, {grid.num_steps - 1}], got {skip!r}")
    if skip == 0:
        return grid
    return TimeGrid(grid.t[skip:], grid.alpha[skip:], grid.sigma[skip:], grid.lam[skip:])


def boost(factor: float) -> Addon:
    """Multiply the initial noise by ``factor`` >= 1 (no carry, the model untouched)."""
    factor = check_number("factor", factor, 1.0)
    return Addon(init=lambda x, key: (), wrap=lambda carry, key, fn: fn,
                 init_x=None if factor == 1 else (lambda x: x * factor))

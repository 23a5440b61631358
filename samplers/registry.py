"""Samplers by name, built for a model-call budget: what ``launch.py`` and the
benchmarks use. ``build(name, schedule, nfe, ...)`` picks the number of grid
steps that spends exactly ``nfe`` model calls (or the nearest below it)."""
from __future__ import annotations

from typing import Callable, NamedTuple

from samplers.core import Sampler
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.rk import TABLEAUX, euler, heun, rk
from samplers.schedules import Schedule


class Entry(NamedTuple):
    builder: Callable[..., Sampler]  # builder(schedule, grid, predicts, **options)
    steps: Callable[[int, bool], int]  # (nfe, final_zero) -> number of grid steps
    spacing: str  # default spacing


def _per_call(k: int) -> Callable[[int, bool], int]:
    return lambda nfe, final_zero: nfe // k


def _heun_steps(nfe: int, final_zero: bool) -> int:
    return (nfe + 1) // 2 if final_zero else nfe // 2


SAMPLERS: dict[str, Entry] = {
    "ddim": Entry(ddim, _per_call(1), "logsnr"),
    "euler": Entry(euler, _per_call(1), "karras"),
    "heun": Entry(heun, _heun_steps, "karras"),
}
for _m in TABLEAUX:
    SAMPLERS[f"rk_{_m}"] = Entry(
        lambda schedule, grid, predicts, _m=_m, **kw: rk(schedule, grid, predicts, method=_m, **kw),
        _per_call(len(TABLEAUX[_m][1])), "uniform",
    )


def names() -> list[str]:
    return sorted(SAMPLERS)


def build(name: str, schedule: Schedule, nfe: int, predicts: str = "eps", *, spacing: str | None = None,
          final: str | None = None, t_start: float | None = None, t_end: float | None = None,
          **options) -> Sampler:
    """Build sampler ``name`` spending ``nfe`` model calls on ``schedule``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler name must be one of {names()}, got {name!r}")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    entry = SAMPLERS[name]
    steps = entry.steps(nfe, final == "zero")
    if steps < 1:
        raise ValueError(f"nfe={nfe} is too small for sampler {name!r}")
    grid = time_grid(schedule, steps, spacing or entry.spacing, final=final, t_start=t_start, t_end=t_end)
    return entry.builder(schedule, grid, predicts, **options)

"""The sampler of an LSD / LSD+ student (Fu et al. 2025, "Learnable Sampler Distillation"): a base
first-order solver whose model output is scaled by a learnt coefficient per step.

The base is DDIM in its noise form (= Euler in y = x / alpha, s = sigma / alpha):

    x_{i+1} = (alpha_{i+1} / alpha_i) x_i + (sigma_{i+1} - alpha_{i+1} sigma_i / alpha_i) c_i eps(x_i, t_i),

on N model times t_0 > ... > t_{N-1} and a last point at sigma = 0; c_i = 1 is DDIM itself. LSD
learns c (the grid fixed), LSD+ also the times, parameterised like ``samplers.ode.learnt_grid``
(log-SNR increments softmax([u, 0])). The learnt state is an artefact {"t": the N model times,
"coef": the N coefficients, "base": "ddim_eps"} saved and loaded with ``learnt_grid.save_grid`` /
``load_grid`` (orbax) and turned into a fixed-coefficient ``Sampler`` by ``lsd_sampler``.
``step_tables`` gives the per-step (A, B) that the sampler and the trainer
(``train.distill.lsd``) share; both are written in numpy / jnp alike.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_grid, predictor
from samplers.ode.multistep import linear_multistep
from samplers.schedules import Schedule

BASE = "ddim_eps"


def step_tables(alpha, sigma):
    """(A, B) of the base step between consecutive points of (alpha, sigma) (numpy or jnp arrays):
    x_{i+1} = A_i x_i + B_i c_i eps_i."""
    ratio = alpha[1:] / alpha[:-1]
    return ratio, sigma[1:] - ratio * sigma[:-1]


def lsd_grid(schedule: Schedule, artefact: dict) -> TimeGrid:
    """The N model times of ``artefact``, then sigma = 0."""
    return time_grid(schedule, timesteps=np.asarray(artefact["t"], np.float64), final="zero")


def lsd(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", coef=None) -> Sampler:
    """The base step on ``grid`` with per-step coefficients ``coef`` (default all 1: DDIM)."""
    check_grid(grid)
    coef = np.ones(grid.num_steps) if coef is None else np.asarray(coef, np.float64)
    if coef.shape != (grid.num_steps,):
        raise ValueError(f"coef must hold one coefficient per step of the grid ({grid.num_steps}), got shape "
                         f"{coef.shape}")
    if not grid.alpha[0] > 0.0:
        raise ValueError(f"the eps step needs alpha > 0 at the first time t={grid.t[0]:g} ({schedule.name} schedule)")
    A, B = step_tables(grid.alpha, grid.sigma)
    return linear_multistep(grid, predictor(schedule, predicts, "eps"), A, (B * coef)[:, None])


def lsd_sampler(schedule: Schedule, artefact: dict, predicts: str = "eps") -> Sampler:
    """The learnt sampler of ``artefact``: its coefficients on its times (N model calls)."""
    if artefact.get("base") != BASE:
        raise ValueError(f"artefact base must be {BASE!r}, got {artefact.get('base')!r}")
    return lsd(schedule, lsd_grid(schedule, artefact), predicts, artefact["coef"])

"""The sampler of an LSD / LSD+ student (Fu et al. 2025, "Learnable Sampler Distillation"): a base
solver of the multistep engine (``samplers.ode.multistep.linear_multistep``) whose coefficient table
is learnt. Two bases (``BASES``):

* ``"ddim_eps"``: DDIM in its noise form (= Euler in y = x / alpha, s = sigma / alpha), the model output
  scaled by a learnt coefficient c_i per step,

      x_{i+1} = (alpha_{i+1} / alpha_i) x_i + (sigma_{i+1} - alpha_{i+1} sigma_i / alpha_i) c_i eps(x_i, t_i),

  on N model times t_0 > ... > t_{N-1} and a last point at sigma = 0; c_i = 1 is DDIM itself.
  ``coef`` has shape (N,).
* ``"dpm_solver_pp_2m"``: DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2; data prediction, diffusers'
  first-order warm-up and last step) on N + 1 points t_0 = t_max > ... > t_N = t_min, its table
  (A (N,), B (N, 2)) plus learnt corrections: ``coef`` (N, 3) holds (dA_i, dB_{i,0}, dB_{i,1}), so

      x_{i+1} = (A_i + dA_i) x_i + (B_{i,0} + dB_{i,0}) x0_i + (B_{i,1} + dB_{i,1}) x0_{i-1};

  coef = 0 is DPM-Solver++(2M) on that grid (the registry's ``dpm_solver_pp_2m`` on its default grid
  when t is the N-step log-SNR grid).

LSD learns ``coef`` (the grid fixed), LSD+ also the times, parameterised like ``samplers.ode.learnt_grid``
(log-SNR increments softmax([u, 0]); ``train.distill.lsd``). The learnt state is an artefact {"t": the
grid's points before sigma = 0 (the N model times for ddim_eps, all N + 1 points for
dpm_solver_pp_2m), "coef", "base"} saved and loaded with ``learnt_grid.save_grid`` / ``load_grid``
(orbax) and turned into a fixed-coefficient ``Sampler`` by ``lsd_sampler``. ``tables`` gives the
learnt (A, B) that the sampler and the trainer share; it is written for numpy (build time, float64)
and jnp (traced times of LSD+) alike.
"""
from __future__ import annotations

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_choice, check_grid, predictor
from samplers.ode.dpm_solver import multistep_rows
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.schedules import Schedule

BASES = ("ddim_eps", "dpm_solver_pp_2m")
SPACE = {"ddim_eps": "eps", "dpm_solver_pp_2m": "x0"}  # the model output the base's table weights
FINAL_ZERO = {"ddim_eps": True, "dpm_solver_pp_2m": False}  # does the base's grid end at sigma = 0?
COEF_COLUMNS = {"ddim_eps": 0, "dpm_solver_pp_2m": 3}  # coef's second dimension (0: coef is (N,))


def step_tables(alpha, sigma):
    """(A, B) of the ddim_eps step between consecutive points of (alpha, sigma) (numpy or jnp arrays):
    x_{i+1} = A_i x_i + B_i c_i eps_i."""
    ratio = alpha[1:] / alpha[:-1]
    return ratio, sigma[1:] - ratio * sigma[:-1]


def dpm2m_tables(alpha, sigma, lam, final_zero: bool = False):
    """(A (N,), B (N, 2)) of DPM-Solver++(2M) (diffusers' first-order warm-up and, with ``final_zero``,
    last step) between the N + 1 points (alpha, sigma, lambda), numpy or jnp
    (``samplers.ode.dpm_solver.multistep_rows``)."""
    orders = multistep_orders(alpha.shape[0] - 1, 2, True, final_zero)
    A, B = multistep_rows(alpha, sigma, lam, "x0", orders, "dpmsolver")
    return A, B[:, :2]


def tables(base: str, alpha, sigma, lam, coef):
    """The learnt table (A (N,), B (N, K)) of ``base`` on the N + 1 points with coefficients ``coef``."""
    if base == "ddim_eps":
        A, B = step_tables(alpha, sigma)
        return A, (B * coef)[:, None]
    A, B = dpm2m_tables(alpha, sigma, lam, FINAL_ZERO[base])
    return A + coef[:, 0], B + coef[:, 1:]


def initial_coef(base: str, num_steps: int) -> np.ndarray:
    """The coefficients at which the student is its base solver (ones, resp. zero corrections)."""
    if base == "ddim_eps":
        return np.ones(num_steps)
    return np.zeros((num_steps, COEF_COLUMNS[base]))


def lsd_grid(schedule: Schedule, artefact: dict) -> TimeGrid:
    """The artefact's points ``t``, then sigma = 0 for a base whose grid ends there."""
    base = check_choice("artefact base", artefact.get("base"), BASES)
    return time_grid(schedule, timesteps=np.asarray(artefact["t"], np.float64),
                     final="zero" if FINAL_ZERO[base] else None)


def lsd(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", coef=None, base: str = "ddim_eps") -> Sampler:
    """The ``base`` step on ``grid`` with coefficients ``coef`` (default ``initial_coef``: the base itself)."""
    check_grid(grid)
    check_choice("base", base, BASES)
    want = initial_coef(base, grid.num_steps)
    coef = want if coef is None else np.asarray(coef, np.float64)
    if coef.shape != want.shape:
        raise ValueError(f"coef must have shape {want.shape} for base {base!r} on a grid of {grid.num_steps} "
                         f"steps, got shape {coef.shape}")
    if base == "ddim_eps" and not grid.alpha[0] > 0.0:
        raise ValueError(f"the eps step needs alpha > 0 at the first time t={grid.t[0]:g} ({schedule.name} schedule)")
    if base == "dpm_solver_pp_2m" and not np.all(np.isfinite(grid.lam)):
        raise ValueError(f"the DPM-Solver++(2M) base needs a finite log-SNR at every grid point (it ends at t_min, "
                         f"not at sigma = 0; {schedule.name} schedule, t={grid.t})")
    A, B = tables(base, grid.alpha, grid.sigma, grid.lam, coef)
    return linear_multistep(grid, predictor(schedule, predicts, SPACE[base]), A, B)


def lsd_sampler(schedule: Schedule, artefact: dict, predicts: str = "eps") -> Sampler:
    """The learnt sampler of ``artefact``: its coefficients on its times (N model calls)."""
    grid = lsd_grid(schedule, artefact)
    return lsd(schedule, grid, predicts, artefact["coef"], artefact["base"])

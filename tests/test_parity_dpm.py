"""Parity with diffusers' DPM-Solver schedulers on the exact Gaussian-mixture model (float64).

Both sides run the same betas, the same exact GMM noise prediction and the same initial noise;
the gap is max|ours - diffusers| / max|diffusers| over the batch. diffusers builds its sigma
table in float32 (``set_timesteps`` casts it); the test replaces it with the float64 table
computed from the same ``alphas_cumprod`` (values of the float32 cumulative product), which our
``vp_discrete(alphas_cumprod=...)`` uses as well, so both sides discretise the same schedule.
DPMSolverMultistepScheduler.step still casts the sample to float32 (``sample.to(torch.float32)``),
so its gaps are ~1e-8 (float32 rounding; ~5e-16 with that cast removed); the singlestep
scheduler has no such cast and agrees to ~1e-16.
"""
import warnings

import jax
import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler

from models.analytic import random_mixture
from samplers.core import sample
from samplers.from_diffusers import singlestep_groups, singlestep_order_list
from samplers.grids import time_grid
from samplers.ode.dpm_solver import dpm_solver, dpm_solver_pp
from samplers.schedules import vp_discrete
from tests.diffusers_utils import run_scheduler

GMM = random_mixture(dim=3, num_components=3, seed=2)
TOL = 1e-6
NUM_STEPS = 10


def _float64_sigmas(scheduler):
    """Replace the scheduler's float32 sigmas by float64 ones from the same alphas_cumprod."""
    ac = scheduler.alphas_cumprod.double()
    sig = ((1.0 - ac) / ac) ** 0.5
    last = 0.0 if scheduler.config.final_sigmas_type == "zero" else float(sig[0])
    t = scheduler.timesteps.long()
    scheduler.sigmas = torch.cat([sig[t], torch.tensor([last], dtype=torch.float64)])


def _make(cls, steps, **config):
    with warnings.catch_warnings():  # algorithm_type="dpmsolver" is deprecated in diffusers
        warnings.simplefilter("ignore")
        sch = cls(num_train_timesteps=1000, beta_schedule="linear", **config)
        sch.set_timesteps(steps)
    _float64_sigmas(sch)
    return sch


def _ours(sampler, schedule):
    x_T = np.array(jax.random.normal(jax.random.PRNGKey(3), (8, GMM.dim), np.float64))
    out = jax.jit(sample, static_argnums=(0, 1))(sampler, GMM.model_fn(schedule, "eps"), x_T)
    return x_T, np.asarray(out.x), int(out.nfe)


def _gap(ours, theirs):
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


# dpmsolver++: every pair of (order, final), (order, spacing) and (final, spacing) appears once
MULTISTEP = [("dpmsolver++", 2, "zero", "linspace", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 2, "sigma_min", "leading", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 2, "zero", "trailing", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 3, "zero", "leading", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 3, "sigma_min", "trailing", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 3, "sigma_min", "linspace", NUM_STEPS, "midpoint"),
             ("dpmsolver++", 2, "zero", "linspace", NUM_STEPS, "heun"),
             ("dpmsolver++", 3, "zero", "linspace", 16, "midpoint"),  # >= 15 steps: no lowered final orders
             ("dpmsolver", 2, "sigma_min", "linspace", NUM_STEPS, "midpoint"),
             ("dpmsolver", 3, "sigma_min", "trailing", NUM_STEPS, "midpoint"),
             ("dpmsolver", 3, "sigma_min", "linspace", 16, "midpoint")]


@pytest.mark.parametrize("alg,order,final,spacing,steps,solver_type", MULTISTEP,
                         ids=["-".join(map(str, c)) for c in MULTISTEP])
def test_multistep_parity(x64, alg, order, final, spacing, steps, solver_type):
    sch = _make(DPMSolverMultistepScheduler, steps, solver_order=order, algorithm_type=alg, lower_order_final=True,
                final_sigmas_type=final, timestep_spacing=spacing, solver_type=solver_type)
    schedule = vp_discrete(alphas_cumprod=sch.alphas_cumprod.double().numpy())
    # our time_grid reproduces diffusers' integer spacings; "sigma_min" ends at t = 0 ("last")
    grid = time_grid(schedule, steps, spacing, final="zero" if final == "zero" else "last")
    np.testing.assert_array_equal(grid.t[:-1], sch.timesteps.numpy())
    build = dpm_solver_pp if alg == "dpmsolver++" else dpm_solver
    ours = build(schedule, grid, order, method="multistep", lower_order_final=True,
                 solver_type="dpmsolver" if solver_type == "midpoint" else "taylor")
    x_T, x_ours, nfe = _ours(ours, schedule)
    x_ref = run_scheduler(sch, GMM, x_T)
    assert nfe == steps
    gap = _gap(x_ours, x_ref)
    print(f"multistep {alg} order={order} final={final} spacing={spacing} steps={steps} {solver_type}: gap {gap:.2e}")
    assert gap <= TOL


def test_multistep_parity_discriminates(x64):
    """Control: the Taylor-consistent third order differs from diffusers' 3M far above TOL."""
    sch = _make(DPMSolverMultistepScheduler, NUM_STEPS, solver_order=3, lower_order_final=True)
    schedule = vp_discrete(alphas_cumprod=sch.alphas_cumprod.double().numpy())
    grid = time_grid(schedule, NUM_STEPS, "linspace", final="zero")
    x_T, x_ours, _ = _ours(dpm_solver_pp(schedule, grid, 3, third_order="taylor"), schedule)
    gap = _gap(x_ours, run_scheduler(sch, GMM, x_T))
    print(f"multistep dpmsolver++ order=3 third_order=taylor vs diffusers: gap {gap:.2e}")
    assert gap > 1e3 * TOL


# diffusers' "midpoint" second order is the reference's "dpmsolver"; its third order is the
# reference's "taylor" only with solver_type="heun" (its "midpoint" third order computes the
# second stage by the midpoint rule, a variant of neither paper nor reference code).
SINGLESTEP = [("dpmsolver++", 2, "zero", "midpoint", 10), ("dpmsolver++", 2, "zero", "heun", 9),
              ("dpmsolver++", 3, "zero", "heun", 10), ("dpmsolver++", 3, "zero", "heun", 8),
              ("dpmsolver", 2, "sigma_min", "midpoint", 9), ("dpmsolver", 3, "sigma_min", "heun", 11)]


@pytest.mark.parametrize("alg,order,final,solver_type,steps", SINGLESTEP, ids=["-".join(map(str, c)) for c in SINGLESTEP])
def test_singlestep_parity(x64, alg, order, final, solver_type, steps):
    sch = _make(DPMSolverSinglestepScheduler, steps, solver_order=order, algorithm_type=alg, lower_order_final=True,
                final_sigmas_type=final, solver_type=solver_type)
    schedule = vp_discrete(alphas_cumprod=sch.alphas_cumprod.double().numpy())
    grid = time_grid(schedule, steps, "linspace", final="zero" if final == "zero" else "last")
    np.testing.assert_array_equal(grid.t[:-1], sch.timesteps.numpy())
    # The scheduler puts every intermediate stage on its own timestep and groups them by its order
    # list; stages="grid" with those groups as ``orders`` reproduces that convention.
    assert sch.order_list == singlestep_order_list(order, steps, True, final == "zero")
    orders = singlestep_groups(sch.order_list)
    build = dpm_solver_pp if alg == "dpmsolver++" else dpm_solver
    ours = build(schedule, grid, order, method="singlestep", orders=orders, stages="grid",
                 solver_type="dpmsolver" if solver_type == "midpoint" else "taylor")
    x_T, x_ours, nfe = _ours(ours, schedule)
    x_ref = run_scheduler(sch, GMM, x_T)
    assert nfe == steps
    gap = _gap(x_ours, x_ref)
    print(f"singlestep {alg} order={order} final={final} {solver_type} steps={steps} orders={orders}: gap {gap:.2e}")
    assert gap <= TOL

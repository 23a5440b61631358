"""Parity of DDIM with eta and SDE-DPM-Solver(++) with diffusers' schedulers on the exact Gaussian
mixture (x64), both sides driven by the same Gaussian noise: diffusers' ``variance_noise`` is
handed the z_i our steps draw from their keys (``sample`` splits the key into init and step keys,
then the step key into one key per step). diffusers' DPMSolverMultistepScheduler keeps sigmas
and the sample in float32, so agreement there is at float32 precision.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from models.analytic import random_mixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.sde.ancestral import ddim_eta
from samplers.sde.sde_dpm import sde_dpm_solver
from tests.diffusers_utils import alphas_cumprod_level, gmm_eps_torch

GMM = random_mixture(dim=3, num_components=3, seed=2)
KEY = jax.random.PRNGKey(7)


def _step_noises(x, num_steps):
    _, step_key = jax.random.split(KEY)
    keys = jax.random.split(step_key, num_steps)
    return [np.array(jax.random.normal(k, x.shape, jnp.float64)) for k in keys]


def _run_diffusers(ref, x, noises, **step_kwargs):
    x = torch.from_numpy(x.copy())
    for t, z in zip(ref.timesteps, noises):
        eps = gmm_eps_torch(GMM, x, *alphas_cumprod_level(ref, t))
        x = ref.step(eps, t, x, variance_noise=torch.from_numpy(z), **step_kwargs).prev_sample
    return x.double().numpy()


def _rel(ours, ref):
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("eta,steps", [(1.0, 10), (0.3, 25)])
def test_ddim_eta_matches_diffusers(x64, eta, steps):
    ref = DDIMScheduler(clip_sample=False, set_alpha_to_one=True)
    ref.set_timesteps(steps)
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    ref.final_alpha_cumprod = ref.final_alpha_cumprod.double()
    sch = schedules.vp_discrete(alphas_cumprod=ref.alphas_cumprod.numpy())
    grid = time_grid(sch, timesteps=ref.timesteps.numpy(), final="zero")
    x = np.random.default_rng(0).standard_normal((8, 3))
    ours = np.asarray(sample(ddim_eta(sch, grid, eta=eta), GMM.model_fn(sch, "eps"), jnp.asarray(x), KEY).x)
    rel = _rel(ours, _run_diffusers(ref, x, _step_noises(x, steps), eta=eta))
    assert rel <= 1e-9, f"max relative difference {rel:.2e}"


CASES = [("dpmsolver++", 2, "midpoint", 10), ("dpmsolver++", 2, "heun", 20), ("dpmsolver", 1, "midpoint", 10),
         ("dpmsolver", 2, "heun", 20)]


@pytest.mark.filterwarnings("ignore:.*sde-dpmsolver.* is deprecated:FutureWarning")
@pytest.mark.parametrize("algorithm,order,solver_type,steps", CASES)
def test_sde_dpm_solver_matches_diffusers(x64, algorithm, order, solver_type, steps):
    # diffusers' noise-prediction SDE solver only ends at sigma_min (t = 0), its data-prediction one at sigma = 0
    final = "zero" if algorithm == "dpmsolver++" else "sigma_min"
    ref = DPMSolverMultistepScheduler(algorithm_type="sde-" + algorithm, solver_order=order, solver_type=solver_type,
                                      final_sigmas_type=final)
    ref.set_timesteps(steps)
    sch = schedules.vp_discrete(alphas_cumprod=ref.alphas_cumprod.double().numpy())
    ts = ref.timesteps.numpy().astype(np.float64)
    grid = (time_grid(sch, timesteps=ts, final="zero") if final == "zero"
            else time_grid(sch, timesteps=np.concatenate([ts, [0.0]])))
    smp = sde_dpm_solver(sch, grid, order=order, algorithm=algorithm, solver_type=solver_type)
    x = np.random.default_rng(1).standard_normal((8, 3))
    ours = np.asarray(sample(smp, GMM.model_fn(sch, "eps"), jnp.asarray(x), KEY).x)
    rel = _rel(ours, _run_diffusers(ref, x, _step_noises(x, steps)))
    assert rel <= 1e-5, f"max relative difference {rel:.2e} (float32 level expected)"

"""Parity with diffusers' DDIM, Euler and Heun schedulers on the exact Gaussian mixture (x64).

diffusers keeps its tables in float32; the tests hand both sides the same numbers:
DDIM's alphas_cumprod is upcast to float64 in the scheduler (its step arithmetic then
runs in float64), and our Euler/Heun grids are placed at exactly diffusers' (float32)
sigmas via t = t_from_lambda(-log sigma).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from diffusers import DDIMScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

from models.analytic import random_mixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.rk import euler, heun
from tests.diffusers_utils import alphas_cumprod_level, run_scheduler, sigma_level

GMM = random_mixture(dim=3, num_components=3, seed=2)


def _noise(n=8):
    return np.random.default_rng(0).standard_normal((n, 3))


def _ours(smp, sch, x):
    return np.asarray(sample(smp, GMM.model_fn(sch, "eps"), jnp.asarray(x)).x)


def _assert_close(ours, ref):
    rel = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    assert rel <= 1e-6, f"max relative difference {rel:.2e}"


@pytest.mark.parametrize("steps,offset", [(10, 0), (25, 1)])
def test_ddim_matches_diffusers(x64, steps, offset):
    ref = DDIMScheduler(clip_sample=False, set_alpha_to_one=True, steps_offset=offset)
    ref.set_timesteps(steps)
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    ref.final_alpha_cumprod = ref.final_alpha_cumprod.double()
    sch = schedules.vp_discrete(alphas_cumprod=ref.alphas_cumprod.numpy())
    # DDIM's "leading" grid: uniform steps of 1000 // steps, the last one to alpha_cumprod = 1
    grid = time_grid(sch, timesteps=ref.timesteps.numpy(), final="zero")
    x = _noise()
    _assert_close(_ours(ddim(sch, grid), sch, x), run_scheduler(ref, GMM, x, alphas_cumprod_level))


def _ve_start(ref, x):
    """Our x_T (VP scale) in diffusers' VE-scaled variable y = x / alpha. (Its
    ``init_noise_sigma`` is sigma_max, not sqrt(sigma_max^2 + 1), for linspace spacing.)"""
    s0 = float(ref.sigmas[0].double())
    return x * (1.0 + s0 * s0) ** 0.5


def _sigma_grid(sch, sigmas):
    """Our grid at diffusers' sigmas (VE-scaled, last one 0)."""
    sig = np.asarray(sigmas, np.float64)
    t = sch.t_from_lambda(-np.log(sig[:-1]))
    return time_grid(sch, timesteps=t, final="zero")


@pytest.mark.parametrize("steps", [10, 30])
def test_euler_matches_diffusers(x64, steps):
    ref = EulerDiscreteScheduler()
    ref.set_timesteps(steps)
    sch = schedules.vp_discrete(alphas_cumprod=ref.alphas_cumprod.double().numpy())
    grid = _sigma_grid(sch, ref.sigmas.numpy())
    x = _noise()
    x_ref = run_scheduler(ref, GMM, _ve_start(ref, x), sigma_level)
    _assert_close(_ours(euler(sch, grid), sch, x), x_ref)


@pytest.mark.parametrize("steps", [10, 30])
def test_heun_matches_diffusers(x64, steps):
    ref = HeunDiscreteScheduler()
    ref.set_timesteps(steps)
    sch = schedules.vp_discrete(alphas_cumprod=ref.alphas_cumprod.double().numpy())
    sig = ref.sigmas.numpy()
    grid = _sigma_grid(sch, np.concatenate([sig[:1], sig[1:-1:2], sig[-1:]]))
    smp = heun(sch, grid)
    assert smp.nfe == len(ref.timesteps) == 2 * steps - 1
    x = _noise()
    x_ref = run_scheduler(ref, GMM, _ve_start(ref, x), sigma_level)
    _assert_close(_ours(smp, sch, x), x_ref)

"""Running a diffusers scheduler on the exact Gaussian-mixture model, for parity tests.

The pipeline loop is diffusers' own: ``model_input = scheduler.scale_model_input(x, t)``,
``out = model(model_input, t)``, ``x = scheduler.step(out, t, x).prev_sample``. The model is
the exact GMM eps prediction at the noise level the scheduler is at, given by
``noise_level(scheduler, t) -> (alpha, sigma)`` of the VP-scaled model input.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

from models.analytic import GaussianMixture


def gmm_eps_torch(gmm: GaussianMixture, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """Exact eps prediction (float64) of ``gmm`` at x = alpha x0 + sigma eps."""
    with jax.enable_x64(True):
        _, eps = gmm.denoise(jnp.asarray(x.detach().cpu().numpy(), jnp.float64), float(alpha), float(sigma))
        return torch.from_numpy(np.array(eps))


def alphas_cumprod_level(scheduler, t) -> tuple[float, float]:
    """(alpha, sigma) at an integer timestep, from the scheduler's alphas_cumprod (DDIM/DPM/UniPC/DEIS)."""
    ac = float(scheduler.alphas_cumprod.double()[int(t)])
    return ac**0.5, (1.0 - ac) ** 0.5


def sigma_level(scheduler, t) -> tuple[float, float]:
    """(alpha, sigma) of the VP-scaled model input at the scheduler's current sigma (Euler/Heun)."""
    s = float(scheduler.sigmas[scheduler.step_index].double())
    return 1.0 / (1.0 + s * s) ** 0.5, s / (1.0 + s * s) ** 0.5


def run_scheduler(scheduler, gmm: GaussianMixture, x_T: np.ndarray,
                  noise_level: Callable = alphas_cumprod_level) -> np.ndarray:
    """diffusers' sampling loop from ``x_T`` (already scaled by ``init_noise_sigma``), float64."""
    x = torch.from_numpy(np.asarray(x_T, np.float64))
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(x, t)
        alpha, sigma = noise_level(scheduler, t)
        eps = gmm_eps_torch(gmm, inp, alpha, sigma)
        x = scheduler.step(eps, t, x).prev_sample
    return x.numpy()

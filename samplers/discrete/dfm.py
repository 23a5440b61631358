"""Discrete flow matching, Euler step (Gat et al. 2024, "Discrete Flow Matching"; the mixture-path solver
of Meta's flow_matching library), with a mask or a uniform source.

The mixture path keeps each token at its data value x1 with probability kappa and else holds the source
(the mask token, or a uniform token): kappa = alpha(t) of samplers/discrete/schedules.py (t = 1 source,
t = 0 data, as every discrete sampler here). From t to s = t - h, per position with current token z:

    x1 ~ p(x1 | x_t) = softmax(model_fn(x_t, t)),   u = kappa' / (1 - kappa) (delta_{x1} - delta_z),
    jump to x1 with probability 1 - exp(-h coef_i lambda_i),   lambda = -alpha'(t) / (1 - alpha(t))

(REFERENCES.md, "Discrete diffusion"; sum u = lambda when x1 != z, else no move). The last step, where the
grid reaches alpha = 1, takes x1 everywhere. ``model_fn`` is the x1 predictor of the path: a masked model
(``ProductMixture.masked_model_fn``) for the mask source, a uniform-noise denoiser
(samplers/discrete/uniform.py ``uniform_model_fn``) for the uniform source. ``coef`` (per step, default
ones) multiplies the rate; ones reproduce the sampler bit for bit. With the mask source and independent
positions the sampler is exact at any step count (the masked posterior does not depend on t); with the
uniform source it converges as h -> 0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, take_rows
from samplers.discrete.categorical import categorical, sampling_dtype
from samplers.discrete.masked import check_coef, check_ids, check_mask_id, check_times
from samplers.discrete.schedules import get_mask_schedule
from samplers.ode.common import check_choice

SOURCES = ("mask", "uniform")


def jump_probabilities(schedule, ts: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """1 - exp(-h_i coef_i lambda(t_i)) per step, 1 on a last step that reaches alpha = 1 (float64)."""
    a_t = schedule.alpha(ts[:-1])
    rate = -schedule.dalpha(ts[:-1]) / np.maximum(1.0 - a_t, 1e-300)
    probs = -np.expm1(-coef * (ts[:-1] - ts[1:]) * rate)
    if schedule.alpha(ts[-1]) >= 1.0:
        probs[-1] = 1.0
    return probs


def euler(vocab_size: int, num_steps: int, source: str = "mask", schedule="linear", mask_id: int | None = None,
          timesteps=None, coef=None, dtype=None) -> Sampler:
    """The DFM Euler sampler on ``num_steps`` steps (module docstring). Start from all ``mask_id`` (mask
    source, default V) or uniform tokens (uniform source)."""
    check_choice("source", source, SOURCES)
    mask_id = check_mask_id(vocab_size, mask_id) if source == "mask" else -1  # -1: no mask (negative ids are rejected)
    schedule = get_mask_schedule(schedule)
    ts = check_times(num_steps, timesteps)
    probs = jump_probabilities(schedule, ts, check_coef(coef, num_steps))
    dtype = sampling_dtype(dtype)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        check_ids(x, vocab_size, mask_id)
        return BasicState(x=jnp.asarray(x, jnp.int32), i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32))

    def step(state, key, model_fn):
        k_x1, k_jump = jax.random.split(key)
        t, p = take_rows(state.i, jnp.float32, ts[:-1], probs)
        x1 = categorical(k_x1, model_fn(state.x, t), dtype)
        jump = jax.random.uniform(k_jump, state.x.shape) < p
        return BasicState(x=jnp.where(jump, x1, state.x), i=state.i + 1, nfe=state.nfe + 1)

    return Sampler(init, step, num_steps, num_steps)

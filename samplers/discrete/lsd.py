"""LSD / LSD+ for masked diffusion (Fu et al. 2025, "Learnable Sampler Distillation for Discrete
Diffusion Models"): the sampler of a learnt artefact, and the exact law of a masked sampler's state
that the trainer (``train.distill.lsd_discrete``) differentiates.

The student is a few-step masked sampler with a learnt per-step coefficient c_i: ``masked.ancestral``
(random order; unmask probability p_i = c_i (alpha_s - alpha_t) / (1 - alpha_t)) or DFM's Euler step
with the mask source (``dfm.euler``; p_i = 1 - exp(-h_i c_i lambda(t_i)), the analogue of the Euler
scheduler the authors distil), and for LSD+ learnt times. Sampling draws tokens, which is not
differentiable; the authors' trainer (github feiyangfu/LSD, ``train_student_distill.py``) sidesteps it
by matching the student's per-step *distributions* to the teacher's. Here that is done exactly on a
small state space: the law of the whole sequence state (every position masked or a token: (V + 1)^L
states) is pushed through each step's transition matrix, whose entries are products over positions of

    stay masked: 1 - p,   unmask to v: p x0_hat(v | x),   keep an unmasked token: 1,

a smooth function of p (hence of c and the times); both bases move this way (DFM's jump at an
unmasked position redraws the observed token). ``law_trajectory`` returns the law after every step;
the artefact {"t": N + 1 times, "coef": N coefficients, "base": one of ``BASES``} becomes a ``Sampler``
through ``lsd_sampler`` (saved / loaded with ``samplers.ode.learnt_grid.save_grid`` / ``load_grid``).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler
from samplers.discrete import dfm
from samplers.discrete.masked import ancestral, check_mask_id
from samplers.ode.common import check_choice

BASES = ("masked", "dfm")  # masked.ancestral / dfm.euler with the mask source
MAX_STATES = 4096


def state_space(vocab_size: int, length: int, mask_id: int | None = None) -> np.ndarray:
    """Every masked-diffusion state: ((V + 1)^L, L) int32 over tokens 0..V-1 and ``mask_id``; the
    all-masked state is row 0. ValueError beyond ``MAX_STATES`` (the law is a dense matrix product)."""
    mask_id = check_mask_id(vocab_size, mask_id)
    size = (vocab_size + 1) ** length
    if size > MAX_STATES:
        raise ValueError(f"the exact law needs (vocab_size + 1)^length <= {MAX_STATES}, got {size}")
    symbols = [mask_id] + list(range(vocab_size))
    return np.array(list(itertools.product(symbols, repeat=length)), np.int32)


def transition_matrix(model_fn, states, t, p, mask_id: int) -> jax.Array:
    """(S, S) transition of one random-order masked step with unmask probability ``p`` at time ``t``
    (both may be traced) between the rows of ``states``."""
    probs = jax.nn.softmax(model_fn(jnp.asarray(states), t).astype(jnp.float32), axis=-1)  # (S, L, V)
    masked = (states == mask_id)[..., None]  # (S, L, 1)
    one_hot = jax.nn.one_hot(states, probs.shape[-1] + 1, dtype=jnp.float32)[..., :-1]  # token v -> v
    # per-position kernel over the next symbol in state order [mask, 0..V-1]
    stay = jnp.where(masked[..., 0], 1.0 - p, 0.0)[..., None]
    tokens = jnp.where(masked, p * probs, one_hot)
    kernel = jnp.concatenate([stay, tokens], axis=-1)  # (S, L, V + 1)
    code = np.where(states == mask_id, 0, states + 1)  # (S', L): each next state's symbol per position
    return jnp.prod(kernel[:, np.arange(states.shape[1])[None], code], axis=-1)  # (S, S')


def law_trajectory(model_fn, states, ts, probs, mask_id: int) -> list[jax.Array]:
    """The law (S,) of the state after each step, from all-masked, of the masked sampler with model times
    ``ts[:-1]`` and unmask probabilities ``probs`` (traced arrays allowed)."""
    law = jnp.zeros(states.shape[0], jnp.float32).at[0].set(1.0)
    out = []
    for i in range(probs.shape[0]):
        law = law @ transition_matrix(model_fn, states, ts[i], probs[i], mask_id)
        out.append(law)
    return out


def token_law(law, states, vocab_size: int) -> jax.Array:
    """The law over the V^L fully unmasked sequences (lexicographic, as ``models.discrete.enumerate``)."""
    clean = np.all(states < vocab_size, axis=-1)
    idx = states[clean] @ (vocab_size ** np.arange(states.shape[1] - 1, -1, -1))
    return jnp.zeros(vocab_size ** states.shape[1], law.dtype).at[idx].set(law[clean])


def lsd_sampler(vocab_size: int, artefact: dict, schedule="linear", mask_id: int | None = None) -> Sampler:
    """The learnt sampler of ``artefact``: its base (``masked.ancestral`` or ``dfm.euler``, mask source)
    on its times with its coefficients."""
    check_choice("artefact base", artefact.get("base"), BASES)
    coef = np.asarray(artefact["coef"], np.float64)
    if artefact["base"] == "masked":
        return ancestral(vocab_size, len(coef), schedule, mask_id, timesteps=artefact["t"], coef=coef)
    return dfm.euler(vocab_size, len(coef), "mask", schedule, mask_id, timesteps=artefact["t"], coef=coef)

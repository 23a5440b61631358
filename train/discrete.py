"""Discrete diffusion in the train / sample / eval jobs: image data quantised to tokens, the masked ELBO
as the loop's objective, and the discrete samplers' generator.

A config trains a discrete model when ``train.loss.kind`` is not ``"denoising"`` (``LOSS_KINDS``):

* ``masked_elbo``: the MDLM / MD4 masked-diffusion NELBO (``train.discrete_losses.MaskedELBO``);
* ``uniform_elbo``: the uniform-noise (D3PM uniform) NELBO in SEDD's form (``train.discrete_losses.UniformELBO``);

both on the schedule ``train.loss.mask_schedule`` (alpha(t), ``samplers.discrete.schedules``), for a token
network (``train.nets.TOKEN_NETWORKS``, e.g. ``token_mlp``) with ``model.kwargs.vocab_size`` = V levels.

The data's values in [-1, 1] (images, ``train.data``) become V tokens, level k = round((x + 1) (V - 1) / 2)
(``to_tokens``; exact for the digits with V = 17: their pixels are the integers 0..16, x = p / 8 - 1), and
samples go back as x = 2 k / (V - 1) - 1 (``from_tokens``), the continuous recipe's scaling, so the
``sample`` job writes the same PNG grids and ``eval`` the same metrics. Samplers: those of
``samplers.registry.DISCRETE_SAMPLERS`` for the kind's noise, from an all-masked start (masked) or uniform
tokens, every sampler from the same keys.

The network's logits are a prior over x0_l given the noisy sequence; the model (in the loss and the samplers:
``observe``) adds the observed token's own likelihood log q(x_t,l | x0_l = v) (Bayes at position l), as the
exact discrete targets are built (``models.discrete.masked_model_fn``, ``samplers.discrete.uniform.
uniform_model_fn``). Masked: 0 at a masked position, else 0 for the observed token and -inf for the others:
carry-over unmasking (MDLM, Sahoo et al. 2024, Sec. 3.2.3); the masked ELBO reads masked positions only.
Uniform: log(alpha [v = y] + (1 - alpha) / V), which keeps the ratio s = q_t(.) / q_t(y) of the uniform ELBO
and samplers bounded as alpha -> 1 (an x0 guess that ignores y makes s ~ 1 / t and the ELBO diverge).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers import registry
from samplers.checks import check_int
from samplers.core import sample as run_sampler
from samplers.discrete.masked import all_masked
from samplers.discrete.schedules import MASK_SCHEDULES, get_mask_schedule
from samplers.discrete.uniform import uniform_log_likelihood, uniform_tokens
from samplers.ode.common import check_choice
from train import distributed
from train.discrete_losses import MaskedELBO, UniformELBO
from train.loop import ObjectiveMethod
from train.nets import TokenNetwork

LOSS_KINDS = ("denoising", "masked_elbo", "uniform_elbo")  # denoising: the continuous objectives of train.losses
NOISE = {"masked_elbo": "mask", "uniform_elbo": "uniform"}  # the samplers' noise (samplers.registry.NOISES)
TOKEN_DATA = ("digits", "cifar10")  # image data in [-1, 1], quantised to tokens


def is_discrete(config) -> bool:
    """Whether ``config`` trains a token network (an analytic config, with no ``train`` section, does not)."""
    train = config.get("train")
    loss = train.get("loss") if train is not None else None
    return loss is not None and loss.get("kind", "denoising") != "denoising"


def carry_over(model_fn, vocab_size: int, mask_id: int):
    """A masked model's ``model_fn`` with carry-over unmasking: an unmasked position's logits are 0 for its own
    token and -inf elsewhere; masked positions are unchanged (module docstring)."""
    vocab = jnp.arange(vocab_size)

    def fn(x, t):
        logits = model_fn(x, t)
        keep = (x[..., None] == vocab) | (x == mask_id)[..., None]
        return jnp.where(keep, logits, -jnp.inf)

    return fn


def observe(model_fn, kind: str, schedule, vocab_size: int, mask_id: int):
    """``model_fn`` (network logits) plus the observed token's likelihood for ``kind`` (module docstring)."""
    if NOISE[kind] == "mask":
        return carry_over(model_fn, vocab_size, mask_id)
    schedule = get_mask_schedule(schedule)

    def fn(x, t):
        alpha = schedule.alpha(jnp.asarray(t, jnp.float32))
        alpha = jnp.reshape(alpha, jnp.shape(alpha) + (1, 1))
        return model_fn(x, t) + uniform_log_likelihood(x, alpha, vocab_size)

    return fn


def to_tokens(x, levels: int) -> jax.Array:
    """Values in [-1, 1] of shape (B, ...) as (B, L) int32 tokens 0..levels-1 (nearest level)."""
    k = jnp.round((jnp.asarray(x, jnp.float32) + 1.0) * (0.5 * (levels - 1)))
    return jnp.clip(k, 0, levels - 1).astype(jnp.int32).reshape(x.shape[0], -1)


def from_tokens(tokens, levels: int, event_shape) -> np.ndarray:
    """Tokens (B, L) as float32 values 2 k / (levels - 1) - 1 of shape (B, *event_shape)."""
    x = np.asarray(tokens, np.float32) * (2.0 / (levels - 1)) - 1.0
    return x.reshape((x.shape[0],) + tuple(event_shape))


@dataclasses.dataclass(frozen=True, eq=False)
class TokenObjective:
    """A discrete objective (``loss(model, tokens, key)``) on the loop's float batches, quantised first, of the
    model ``wrap(apply)`` (``observe``)."""

    objective: MaskedELBO | UniformELBO
    levels: int
    wrap: Callable

    def loss(self, apply, batch, key) -> jax.Array:
        return self.objective.loss(self.wrap(apply), to_tokens(batch, self.levels), key)


def check(config, network) -> None:
    """``train.loss`` (kind, mask_schedule), the model, the data and every (sampler, NFE) of a discrete
    config: a ValueError naming the field."""
    loss = config.train.loss
    check_choice("train.loss.kind", loss.kind, LOSS_KINDS)
    token_net = isinstance(network, TokenNetwork)
    if not is_discrete(config):
        if token_net:
            raise ValueError(f"model.name={config.model.name!r} is a token network: it needs train.loss.kind in "
                             f"{[k for k in LOSS_KINDS if k != 'denoising']}, got {loss.kind!r}")
        return
    if not token_net:
        raise ValueError(f"train.loss.kind={loss.kind!r} needs a token network (model.name 'token_mlp'), got "
                         f"model.name={config.model.name!r}")
    check_choice("train.loss.mask_schedule", loss.mask_schedule, sorted(MASK_SCHEDULES))
    check_choice(f"data.name (of train.loss.kind={loss.kind!r})", config.data.name, TOKEN_DATA)
    if network.vocab_size < 2:
        raise ValueError(f"model.kwargs.vocab_size must be >= 2 (quantisation levels), got {network.vocab_size}")
    from train.config import as_tuple, solvers

    s = config.sampler
    if not as_tuple(s.name) or not as_tuple(s.nfe):
        raise ValueError("sampler.name and sampler.nfe must each give at least one value")
    for name in as_tuple(s.name):
        check_choice(f"sampler.name (of train.loss.kind={loss.kind!r})", name,
                     registry.discrete_names(NOISE[loss.kind]))
    for nfe in as_tuple(s.nfe):
        check_int("sampler.nfe", nfe)
    check_int("sampler.num_samples", s.num_samples)
    for name, nfe in solvers(config):
        try:
            build_sampler(config, network, name, nfe)
        except ValueError as err:
            raise ValueError(f"sampler.name={name!r} at NFE {nfe} with train.loss.mask_schedule="
                             f"{loss.mask_schedule!r}: {err}") from err


FIXED_NFE = ("first_hitting",)  # one token per model call: NFE = L whatever sampler.nfe says


def solver_pairs(pairs: list[tuple[str, int]], event_shape) -> list[tuple[str, int]]:
    """The (sampler, NFE) pairs of a discrete config: those of ``FIXED_NFE`` once, at NFE = L."""
    length = int(np.prod(event_shape))
    out = [(n, length if n in FIXED_NFE else f) for n, f in pairs]
    return list(dict.fromkeys(out))


def build_objective(config, network: TokenNetwork) -> ObjectiveMethod:
    """The loop ``Method`` of ``train.loss.kind`` for ``network`` (quantised data, fresh times and masks)."""
    loss = config.train.loss
    if loss.kind == "masked_elbo":
        elbo = MaskedELBO(loss.mask_schedule, network.vocab_size, network.mask_id)
    else:
        elbo = UniformELBO(loss.mask_schedule, network.vocab_size)
    return ObjectiveMethod(TokenObjective(elbo, network.vocab_size, lambda fn: model_of(config, network, fn)))


def model_of(config, network: TokenNetwork, model_fn):
    """The discrete samplers' ``model_fn`` of network logits ``model_fn`` for ``train.loss.kind`` (``observe``)."""
    return observe(model_fn, config.train.loss.kind, config.train.loss.mask_schedule, network.vocab_size,
                   network.mask_id)


def build_sampler(config, network: TokenNetwork, name: str, nfe: int):
    return registry.build_discrete(name, network.vocab_size, network.length, nfe, config.train.loss.mask_schedule)


def generator(config, network: TokenNetwork, params, mesh):
    """``gen(name, nfe, n) -> (samples (n, *event_shape) float32 numpy, nfe used)`` as ``train.jobs.generator``:
    tokens from an all-masked (masked model) or uniform start, dequantised; the same keys for every sampler."""
    batch = distributed.sampling_batch(config.sampler.batch_size, mesh)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 2)
    data_sh = distributed.batch_sharded(mesh)
    masked = NOISE[config.train.loss.kind] == "mask"

    def start(k):
        if masked:
            return all_masked(batch, network.length, network.mask_id)
        return uniform_tokens(jax.random.fold_in(k, 1), batch, network.length, network.vocab_size)

    def gen(name: str, nfe: int, n: int):
        smp = build_sampler(config, network, name, nfe)

        @jax.jit
        def draw(p, k):
            x = jax.lax.with_sharding_constraint(start(k), data_sh)
            out = run_sampler(smp, model_of(config, network, network.model_fn(p)), x, k)
            return out.x, out.nfe

        tokens, used = distributed.draw_batches(draw, params, key, n, batch)
        return from_tokens(tokens, network.vocab_size, network.event_shape), used

    return gen

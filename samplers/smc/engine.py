"""The SMC engine: N particles on the leading axis of x, moved by a stochastic sampler's Gaussian
transition (``Sampler.transition``), weighted by a ``Potential``, resampled adaptively.

Step i of ``smc(sampler, potential)`` (the generic sequential importance resampling of Doucet,
de Freitas & Gordon 2001; Chopin & Papaspiliopoulos 2020, Alg. 10.3, with the adaptive ESS rule):

    tr = sampler.transition(inner_i)                   # x_{i+1} ~ p_i(. | x_i) = N(tr.mean, tr.scale^2 I)
    mean, aux = potential.propose(tr, x_i, extra)      # the proposal q_i = N(mean, tr.scale^2 I)
    x_{i+1} = mean + tr.scale z
    log G_i, extra = potential.log_weight(tr, x_i, x_{i+1}, mean, extra, aux)
    log Z += logsumexp(log W + log G_i)                # W normalised: the incremental evidence
    W <- normalise(W G_i); resample when ESS(W) < ess_threshold N (W <- 1/N), else W carries over

so with the initial weight G_init(x_0) the weighted particles target
(1/Z) G_init(x_0) prod_i p_i(x_{i+1} | x_i) G_i ... / q_i ..., and exp(log Z) is an unbiased
estimate of Z (Del Moral 2004, Thm. 7.4.2) whether or not the particles are resampled. Threshold 0
never resamples (plain importance sampling: log Z is then the one-shot estimate
log mean_k prod_i G_i(x^k)); threshold 1 resamples at every step.

A potential's functions are traced inside the step; the model calls they make are counted by the
engine (every call of the ``model_fn`` it passes them while tracing) unless the potential declares
them (``Potential.calls``), so ``state.nfe`` is exact.
Several independent runs are a ``jax.vmap`` of ``sample`` over keys and starts.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

from samplers.core import Sampler
from samplers.smc import resampling
from samplers.smc.search import check_base

Array = jax.Array


@struct.dataclass
class SMCState:
    x: Array  # (N, ...) particles, the leading axis is the particle axis (== inner.x)
    inner: Any  # the proposal Sampler's own state (memoryless Gaussian-transition samplers)
    log_w: Array  # (N,) normalised log-weights (logsumexp = 0)
    log_z: Array  # () running log normalising-constant estimate
    ess: Array  # () ESS of this step's weights before the resampling decision
    ancestors: Array  # (N,) int32 indices of the last resampling (arange when none)
    extra: Any  # per-particle pytree (leading axis N) resampled with x; () if none
    i: Array  # () int32 step index
    nfe: Array  # () int32 model calls so far


class Potential(NamedTuple):
    """What an SMC method plugs into the engine (all pure, traced inside the step).

    * ``init(x, model_fn) -> (log_w0 (N,) unnormalised, extra, nfe_used int)``;
    * ``propose(tr, x, extra, model_fn) -> (mean (N, ...), aux)``: the proposal mean (``tr.mean``
      for the base kernel); the proposal's scale is the base kernel's ``tr.scale``;
    * ``log_weight(tr, x_old, x_new, mean, extra, model_fn, aux) -> (log_incr (N,), extra_new)``;
    * ``calls``: (model calls of ``init``, of one step's ``propose`` + ``log_weight``), counted in
      the static ``Sampler.nfe`` and, for a step, in ``state.nfe`` (a potential that calls models of
      its own beside the engine's ``model_fn``, e.g. other experts, declares them here). None: the
      calls of the engine's ``model_fn`` are counted while tracing (``state.nfe`` exact, ``Sampler.nfe``
      then counts the base sampler's calls and no potential's).
    """

    init: Callable
    propose: Callable
    log_weight: Callable
    calls: tuple[int, int] | None = None


def check_threshold(ess_threshold) -> float:
    """``ess_threshold`` as a float in [0, 1], else a ValueError naming it."""
    number = isinstance(ess_threshold, (int, float, np.integer, np.floating)) and not isinstance(ess_threshold, bool)
    if not number or not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1] (0: never resample, 1: always), "
                         f"got {ess_threshold!r}")
    return float(ess_threshold)


def reweight_resample(key, log_w, log_incr, resample: Callable, threshold, force=False):
    """One reweighting and adaptive resampling of normalised log-weights ``log_w`` (N,) by the
    increments ``log_incr`` (N,): returns (idx (N,) int32, new normalised log_w, dlog_z (), ess ()).

    dlog_z = logsumexp(log_w + log_incr) (the incremental evidence), W = normalise(log_w + log_incr),
    ess = ESS(W); if ess < threshold N, threshold >= 1 or ``force`` (may be traced):
    idx = resample(key, exp W, N) and log_w = -log N; else idx = arange(N) and log_w = W."""
    n = log_w.shape[0]
    a = log_w + log_incr
    dlog_z = logsumexp(a)
    w = a - dlog_z
    ess = jnp.exp(-logsumexp(2.0 * w))
    redraw = (ess < threshold * n) | (jnp.asarray(threshold) >= 1.0) | force
    idx = jnp.where(redraw, resample(key, jnp.exp(w), n), jnp.arange(n, dtype=jnp.int32))
    log_w = jnp.where(redraw, jnp.full_like(w, -np.log(n)), w)
    return idx, log_w, dlog_z, ess


def _counted(model_fn):
    """(model_fn that counts its calls while traced, the counter list)."""
    count = [0]

    def fn(*args, **kwargs):
        count[0] += 1
        return model_fn(*args, **kwargs)

    return fn, count


def _gather(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def smc(sampler: Sampler, potential: Potential, *, resampler: str = "systematic", ess_threshold: float = 0.5,
        final_resample: bool = False) -> Sampler:
    """The SMC ``Sampler`` of ``potential`` on the memoryless Gaussian-transition ``sampler``
    (ddpm, ddim_eta, euler_maruyama, flow_sde; module docstring). ``init(x)`` takes particles
    (N, ...); ``resampler``: one of ``resampling.RESAMPLERS``; ``ess_threshold`` in [0, 1];
    ``final_resample`` resamples after the last step (an unweighted output)."""
    check_base(sampler)
    if not isinstance(potential, Potential):
        raise ValueError(f"potential must be a samplers.smc.engine.Potential, got {type(potential).__name__}")
    resample = resampling.check_resampler(resampler)
    threshold = check_threshold(ess_threshold)
    if not isinstance(final_resample, bool):
        raise ValueError(f"final_resample must be True or False, got {final_resample!r}")
    last = sampler.num_steps - 1

    def init(x, key=None, model_fn=None):
        del key
        if x.ndim < 2:
            raise ValueError(f"x must hold the particles on a leading axis, shape (N, ...), got {x.shape}")
        n = x.shape[0]
        lw, extra, used = potential.init(x, model_fn)
        total = logsumexp(lw)
        return SMCState(x=x, inner=sampler.init(x), log_w=lw - total, log_z=total - np.log(n).astype(x.dtype),
                        ess=resampling.ess(lw).astype(x.dtype), ancestors=jnp.arange(n, dtype=jnp.int32),
                        extra=extra, i=jnp.zeros((), jnp.int32), nfe=jnp.asarray(used, jnp.int32))

    def step(state, key, model_fn):
        kz, kr = jax.random.split(key)
        fn, count = _counted(model_fn)
        tr = sampler.transition(state.inner, fn)
        base = count[0]
        mean, aux = potential.propose(tr, state.x, state.extra, fn)
        x = mean + tr.scale * jax.random.normal(kz, mean.shape, mean.dtype)
        log_incr, extra = potential.log_weight(tr, state.x, x, mean, state.extra, fn, aux)
        used = count[0] - base if potential.calls is None else potential.calls[1]
        force = (state.i == last) if final_resample else False
        idx, log_w, dlog_z, ess = reweight_resample(kr, state.log_w, log_incr.astype(state.log_w.dtype), resample,
                                                    threshold, force)
        x = x[idx]
        return SMCState(x=x, inner=tr.state.replace(x=x), log_w=log_w, log_z=state.log_z + dlog_z, ess=ess,
                        ancestors=idx, extra=_gather(extra, idx), i=state.i + 1, nfe=state.nfe + base + used)

    calls = (0, 0) if potential.calls is None else potential.calls
    return Sampler(init=init, step=step, num_steps=sampler.num_steps,
                   nfe=calls[0] + sampler.nfe + sampler.num_steps * calls[1])


def weighted_mean(state: SMCState, f: Callable = lambda x: x):
    """sum_k W_k f(x_k) with W = softmax(state.log_w): the SMC estimate of E[f] (f maps the
    particles (N, ...) to an array with the particle axis first)."""
    w = jax.nn.softmax(state.log_w)
    return jnp.tensordot(w, f(state.x), axes=1)


def base_potential() -> Potential:
    """The plain proposal (the base kernel) with zero increments: a sanity baseline whose weights
    stay uniform and whose log Z is 0."""
    return Potential(init=lambda x, model_fn: (jnp.zeros(x.shape[:1], x.dtype), (), 0),
                     propose=lambda tr, x, extra, model_fn: (tr.mean, None),
                     log_weight=lambda tr, x_old, x_new, mean, extra, model_fn, aux:
                     (jnp.zeros(x_new.shape[:1], x_new.dtype), extra),
                     calls=(0, 0))

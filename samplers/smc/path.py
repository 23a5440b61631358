"""SMC along a path of unnormalised densities with exact weights and Metropolis-adjusted moves: the
SMC sampler of Del Moral, Doucet & Jasra (2006, "Sequential Monte Carlo samplers", Sec. 3.3.2: an
MCMC kernel invariant for pi_k, its time reversal as the backward kernel) on the diffusion path of
energy-parameterised models (Du et al. 2023, "Reduce, Reuse, Recycle: compositional generation with
energy-based diffusion models and MCMC": products of experts pi_t = prod_e p_{e,t} with MCMC moves).

``model_fn(x, t) -> (N,)`` is log gamma_t(x), an unnormalised log-density of the path at model time
t (for a product of experts the sum of each expert's noised marginal log-density,
``product_log_density``); ``times`` t_0 > t_1 > ... > t_K the path's levels, gamma_{t_K} the
target. From the reference N(0, s^2 I) (normaliser known), step k (the AIS form of the weights):

    x^j ~ N(0, s^2 I),       log w^j = log gamma_{t_0}(x^j) - log N(x^j; 0, s^2 I)     (init)
    log G_k^j = log gamma_{t_{k+1}}(x^j) - log gamma_{t_k}(x^j)    at the current particles
    log Z += logsumexp(log W + log G_k); W <- normalise(W G_k); resample if ESS < threshold N
    x^j <- M moves of a Metropolis-adjusted kernel (MALA, HMC) leaving gamma_{t_{k+1}} invariant

(reweighting and resampling are the engine's ``reweight_resample``). With an MCMC kernel that
leaves pi_{k+1} invariant and its reversal as the backward kernel, the incremental weight is exactly
gamma_{k+1} / gamma_k at the pre-move particles, so exp(log Z) is an unbiased estimate of
Z_K / (reference normaliser 1) = integral gamma_{t_K} (Del Moral 2004, Thm. 7.4.2), whatever the
number of levels, with no discretisation error: the weights need the densities, not only scores.
Unbiasedness holds for a fixed step size; ``target_accept`` adapts it from the particles' mean
acceptance (as blackjax's adaptive SMC tunes its kernels from the population), which makes the
kernel depend on the population (consistent, unbiased only up to that adaptation).

The kernel is any landed Metropolis-adjusted ``Sampler`` on a log-density (``mcmc.mala``,
``mcmc.hmc`` with ``target="logdensity"``) whose ``num_steps`` is the number of moves per level; it
is run on ``lambda x, _: model_fn(x, t_{k+1})``. Its ``init`` (one evaluation of log gamma and its
gradient) gives the incremental weight and the first move's gradient, so a level costs
``kernel.nfe`` = 1 + moves x gradients per move model calls (one call = one value-and-gradient of
log gamma_t), and a run ``1 + K kernel.nfe`` (the 1: log gamma_{t_0} at init, by the kernel's
``init``, whose gradient is unused).

The state is the engine's ``SMCState``: ``extra`` holds log gamma_{t_k} at the particles, ``inner``
the adapted step size and the last level's mean acceptance (``MoveStats``).

``final_moves`` > 0 runs that many more kernel moves on gamma_{t_K} after the last level's moves
(after the last reweighting, so no weight changes): a kernel invariant for pi_{t_K} leaves the
weighted particles a valid (and Z-hat the same unbiased) estimate, and rejuvenates the resampled
duplicates (as the final MCMC sweep of resample-move SMC, Gilks & Berzuini 2001). They cost
``final_moves`` x the kernel's model calls per move, counted in ``nfe``.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

from samplers.checks import check_int, check_number, check_positive
from samplers.core import Sampler
from samplers.mcmc.common import accept_prob, sum_event
from samplers.smc import resampling
from samplers.smc.engine import SMCState, check_threshold, reweight_resample

KERNEL_FIELDS = ("step_size", "logdensity", "grad", "log_accept", "accept_sum")


@struct.dataclass
class MoveStats:
    step_size: jax.Array  # () the MCMC step size of the next level's moves
    accept: jax.Array  # () mean acceptance probability of the last level's moves


def product_log_density(*log_densities: Callable) -> Callable:
    """``fn(x, t) = sum_e log p_{e,t}(x)``: the product of experts' path (e.g. each
    ``GaussianMixture.log_prob_fn(schedule)``, or energy-parameterised networks' -E_e(x, t))."""
    if not log_densities or not all(callable(f) for f in log_densities):
        raise ValueError("log_densities must be one or more callables fn(x, t) -> (N,) log p_{e,t}(x)")
    return lambda x, t: sum(f(x, t) for f in log_densities)


def check_times(times) -> np.ndarray:
    """``times`` as a float64 array: 1-D, at least 2 finite, strictly decreasing model times."""
    t = np.asarray(times, np.float64)
    if t.ndim != 1 or len(t) < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) >= 0):
        raise ValueError(f"times must be a 1-D array of >= 2 finite, strictly decreasing model times "
                         f"(first the level after the reference, last the target), got {times!r}")
    return t


def check_kernel_state(state):
    """A ValueError naming ``kernel`` unless ``state`` (the kernel's) has the fields of
    ``KERNEL_FIELDS``, i.e. is a Metropolis-adjusted kernel's (mala, hmc) on a log-density."""
    missing = [f for f in KERNEL_FIELDS if getattr(state, f, None) is None]
    if missing:
        raise ValueError(f"kernel must be a Metropolis-adjusted MCMC kernel on a log-density (samplers.mcmc.mala "
                         f"or hmc with target='logdensity'); its state {type(state).__name__} lacks {missing}")
    return state


def check_kernel(kernel) -> Sampler:
    """``kernel`` if it is a ``Sampler`` whose state passes ``check_kernel_state`` (probed on one
    1-D chain; a kernel tied to another event shape, e.g. HMC with a diagonal mass, is checked at
    ``init``), else a ValueError naming ``kernel``."""
    if not isinstance(kernel, Sampler):
        raise ValueError(f"kernel must be a Metropolis-adjusted MCMC Sampler (samplers.mcmc.mala or hmc with "
                         f"target='logdensity'), got {type(kernel).__name__}")
    try:
        state = jax.eval_shape(lambda: kernel.init(jnp.zeros((1, 1)), model_fn=lambda x, t: -jnp.sum(x**2, -1)))
    except (ValueError, TypeError):  # cannot probe on this event shape: checked at init
        return kernel
    check_kernel_state(state)
    return kernel


def _gather_particles(tree, idx):
    """Every per-particle leaf (leading axis N) of ``tree`` at ``idx``; scalars unchanged."""
    return jax.tree_util.tree_map(lambda a: a[idx] if jnp.ndim(a) else a, tree)


def path_smc(times, kernel: Sampler, *, reference_std: float = 1.0, resampler: str = "systematic",
             ess_threshold: float = 0.5, target_accept: float | None = None,
             final_resample: bool = False, final_moves: int = 0) -> Sampler:
    """The path SMC ``Sampler`` (module docstring) over ``times`` with ``kernel``'s moves at each level.

    ``init(z)``: z ~ N(0, I) of shape (N, ...), the particles are ``reference_std * z``.
    ``resampler``: one of ``resampling.RESAMPLERS``; ``ess_threshold`` in [0, 1];
    ``target_accept``: None (the kernel's own step size at every level) or a mean acceptance
    probability in (0, 1) towards which the step size moves after every MCMC move,
    log h += mean acceptance - target_accept; ``final_resample`` resamples after the last level;
    ``final_moves`` >= 0: extra kernel moves on the target after the last level (module docstring).
    ``state.x`` are the weighted particles, ``state.log_z`` the log of the unbiased estimate of
    integral gamma_{t_K}, ``engine.weighted_mean(state, f)`` the estimate of E[f].
    """
    t = check_times(times)
    kernel = check_kernel(kernel)
    s = check_positive("reference_std", reference_std)
    resample = resampling.check_resampler(resampler)
    threshold = check_threshold(ess_threshold)
    if target_accept is not None:
        target_accept = check_number("target_accept", target_accept, 0.0, 1.0, open_lo=True)
        if target_accept == 1.0:
            raise ValueError("target_accept must be None (fixed step size) or a number in (0, 1), got 1.0")
    if not isinstance(final_resample, bool):
        raise ValueError(f"final_resample must be True or False, got {final_resample!r}")
    final_moves = check_int("final_moves", final_moves, 0)
    per_move = (kernel.nfe - 1) // kernel.num_steps  # model calls of one move (the kernel's init excluded)
    levels = len(t) - 1

    def init(z, key=None, model_fn=None):
        del key
        if z.ndim < 2:
            raise ValueError(f"z must hold the particles on a leading axis, shape (N, ...), got {z.shape}")
        n, dt = z.shape[0], z.dtype
        x = s * z
        first = check_kernel_state(kernel.init(x, model_fn=lambda y, _: model_fn(y, jnp.asarray(t[0], dt))))
        ld = first.logdensity  # log gamma_{t_0} (its gradient is unused)
        log_ref = -0.5 * sum_event(z * z) - (z.size // n) * float(np.log(s) + 0.5 * np.log(2 * np.pi))
        lw = ld - log_ref
        total = logsumexp(lw)
        stats = MoveStats(step_size=jnp.asarray(first.step_size, dt), accept=jnp.zeros((), dt))
        return SMCState(x=x, inner=stats, log_w=lw - total, log_z=total - np.log(n).astype(dt),
                        ess=resampling.ess(lw).astype(dt), ancestors=jnp.arange(n, dtype=jnp.int32),
                        extra=ld, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32))

    def moves(ks, h, key, count, at):
        """``count`` kernel moves on ``at`` from ``ks`` with step size ``h`` (adapted if ``target_accept``)."""
        def move(carry, k):
            ks, h = carry
            ks = kernel.step(ks.replace(step_size=h), k, at)
            if target_accept is not None:
                h = h * jnp.exp(jnp.mean(accept_prob(ks.log_accept)) - target_accept).astype(h.dtype)
            return (ks, h), None

        return jax.lax.scan(move, (ks, h), jax.random.split(key, count))[0]

    def step(state, key, model_fn):
        kr, km, kf = jax.random.split(key, 3)
        dt = state.x.dtype
        t_next = jnp.asarray(t, dt)[state.i + 1]
        at = lambda y, _: model_fn(y, t_next)
        ks = kernel.init(state.x, model_fn=at)  # log gamma_{t_{k+1}} and its gradient at the particles
        force = (state.i == levels - 1) if final_resample else False
        idx, log_w, dlog_z, ess = reweight_resample(kr, state.log_w, (ks.logdensity - state.extra).astype(dt),
                                                    resample, threshold, force)
        ks = _gather_particles(ks, idx)
        ks, h = moves(ks, state.inner.step_size, km, kernel.num_steps, at)
        accept = (jnp.mean(ks.accept_sum) / kernel.num_steps).astype(dt)
        nfe = state.nfe + kernel.nfe
        if final_moves:  # static; at the last level only (a real branch: state.i is not per-run)
            last = state.i == levels - 1
            ks, h = jax.lax.cond(last, lambda c: moves(*c, kf, final_moves, at), lambda c: c, (ks, h))
            nfe = nfe + jnp.where(last, final_moves * per_move, 0).astype(nfe.dtype)
        stats = MoveStats(step_size=h, accept=accept)
        return SMCState(x=ks.x, inner=stats, log_w=log_w, log_z=state.log_z + dlog_z, ess=ess, ancestors=idx,
                        extra=ks.logdensity, i=state.i + 1, nfe=nfe)

    return Sampler(init=init, step=step, num_steps=levels, nfe=1 + levels * kernel.nfe + final_moves * per_move)

"""The twisted diffusion sampler (TDS; Wu, Trippe, Naesseth, Blei & Cunningham 2023, "Practical and
asymptotically exact conditional sampling in diffusion models", Alg. 1) as a ``Potential`` of
``samplers.smc.engine.smc``.

The target is the base sampler's law of the data-level sample x_n times a likelihood p(y | x_n)
(a reward tilt is p(y | x) = exp(lam r(x))). With x0_hat(x_i) the model's posterior mean at level
i (one model call), the twist at level i is

    p~_i(x_i) = p(y | x0_hat(x_i))                 (``tds``, eq. (7) of the paper),
    p~_i(x_i) = N(y; A x0_hat(x_i), v_i I)         (``linear_tds``, the inpainting / linear-
                                                    measurement twist, Section 3.3 / 4),

and p~_n = p(y | x_n) exactly at the data level. Step i draws from the twisted proposal

    q(x_{i+1} | x_i) = N(mean_i + scale_i^2 grad log p~_i(x_i), scale_i^2 I)

(the first-order expansion of p(x_{i+1} | x_i) p~(x_{i+1}) around x_i, eq. (8); mean_i, scale_i
are the base sampler's ``Transition``), and weights the particle by

    w_i = p(x_{i+1} | x_i) p~_{i+1}(x_{i+1}) / (p~_i(x_i) q(x_{i+1} | x_i)),

whose Gaussian ratio is log p - log q = -[(x_{i+1} - mean_q) . g + scale^2 |g|^2 / 2] with
g = grad log p~_i(x_i) (no division: exact also on a noise-free step). The initial weight is
p~_0(x_0); the product of the increments telescopes to p(y | x_n) p(x_{0:n}) / q(x_{0:n}), so the
weighted particles target the base law tilted by the likelihood and the running log-Z estimates
log E_base[p(y | x_n)] (unbiased in Z). The state's ``extra`` caches log p~ and its gradient at the
particles, so a step costs one forward-and-backward twist evaluation (``model_fn`` differentiated
by ``jax.grad``) beside the base transition's model call. The gradient of the summed twist is the
per-particle gradient: ``model_fn`` must treat the rows of x independently (every model of the
library does).

The linear twist's variance v_i = noise_std^2 + sigma_i^2 / (alpha_i^2 + sigma_i^2) adds to the
measurement noise the posterior variance of x0 given x_i under a unit-variance prior (1 - abar_i on
a VP schedule, the (1 - abar_t) variance of the paper's inpainting twist (?: not confirmed in the
reference code)); it equals noise_std^2 at the data level.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import Sampler
from samplers.param import to_x0_eps
from samplers.schedules import Schedule
from samplers.smc.engine import Potential
from samplers.smc.inverse import check_problem
from samplers.smc.search import check_base, kernel


def _check_likelihood(log_likelihood):
    if not callable(log_likelihood):
        raise ValueError(f"log_likelihood must be a callable x (N, ...) -> (N,) log p(y | x), "
                         f"got {type(log_likelihood).__name__}")
    return log_likelihood


def _check_schedule(schedule):
    if not isinstance(schedule, Schedule):
        raise ValueError(f"schedule must be a samplers.schedules.Schedule (the base sampler's), "
                         f"got {type(schedule).__name__}")
    return schedule


def twisted(sampler: Sampler, schedule: Schedule, log_twist: Callable) -> Potential:
    """The TDS potential (module docstring) for a twist ``log_twist(x0, alpha, sigma) -> (N,)``:
    log p~ at level i is log_twist(x0_hat(x_i), alpha_i, sigma_i), and at the data level
    log_twist(x_n, 1, 0), which must be the exact log-likelihood log p(y | x_n)."""
    check_base(sampler)
    _check_schedule(schedule)
    n = sampler.num_steps

    def value_and_grad(x, level, model_fn):
        """(log p~_level(x) (N,), its gradient in x): one model call at level < n and its backward."""

        def total(x):
            tr = kernel(sampler, x, jnp.minimum(level, n - 1), model_fn)
            x0 = tr.output if tr.space == "x0" else to_x0_eps(tr.output, x, tr.t, schedule, tr.space)[0]
            t = jnp.asarray(tr.t, x.dtype)
            one, zero = jnp.ones((), x.dtype), jnp.zeros((), x.dtype)
            lt = jnp.where(level >= n, log_twist(x, one, zero),
                           log_twist(x0, schedule.alpha(t).astype(x.dtype), schedule.sigma(t).astype(x.dtype)))
            return jnp.sum(lt), lt

        grad, lt = jax.grad(total, has_aux=True)(x)
        return lt, grad

    def init(x, model_fn):
        lt, grad = value_and_grad(x, jnp.zeros((), jnp.int32), model_fn)
        return lt, {"log_twist": lt, "grad": grad}, 1

    def propose(tr, x, extra, model_fn):
        del x, model_fn
        scale = jnp.asarray(tr.scale, tr.mean.dtype)
        return tr.mean + scale**2 * extra["grad"], None

    def log_weight(tr, x_old, x_new, mean, extra, model_fn, aux):
        del x_old, aux
        g, scale = extra["grad"], jnp.asarray(tr.scale, x_new.dtype)
        axes = tuple(range(1, x_new.ndim))
        log_p_over_q = -(jnp.sum((x_new - mean) * g, axes) + 0.5 * scale**2 * jnp.sum(g * g, axes))
        lt, grad = value_and_grad(x_new, tr.state.i, model_fn)
        return log_p_over_q + lt - extra["log_twist"], {"log_twist": lt, "grad": grad}

    return Potential(init=init, propose=propose, log_weight=log_weight, calls=(1, 1))


def tds(sampler: Sampler, schedule: Schedule, log_likelihood: Callable) -> Potential:
    """TDS for a differentiable log-likelihood (or scaled reward) ``log_likelihood(x) -> (N,)``:
    twist p~_i(x_i) = p(y | x0_hat(x_i)). ``sampler``: a memoryless Gaussian-transition sampler
    (ddpm, ddim_eta, euler_maruyama, flow_sde) of ``schedule``."""
    _check_likelihood(log_likelihood)
    return twisted(sampler, schedule, lambda x0, alpha, sigma: log_likelihood(x0))


def linear_variance(noise_std: float, alpha, sigma):
    """v_i = noise_std^2 + sigma^2 / (alpha^2 + sigma^2) of the linear-measurement twist."""
    return noise_std**2 + sigma**2 / (alpha**2 + sigma**2)


def linear_tds(sampler: Sampler, schedule: Schedule, A, y, noise_std: float) -> Potential:
    """TDS for y = A x + noise_std e (inpainting: A selects the observed coordinates) on flat
    particles (N, d): twist N(y; A x0_hat(x_i), v_i I) with v_i = ``linear_variance``, the exact
    likelihood N(y; A x, noise_std^2 I) at the data level."""
    A, y, s = check_problem(A, y, noise_std)

    def log_twist(x0, alpha, sigma):
        if x0.ndim != 2 or x0.shape[1] != A.shape[1]:
            raise ValueError(f"x must be flat particles (N, {A.shape[1]}) (the columns of A), got {x0.shape}")
        v = linear_variance(s, alpha, sigma)
        r = jnp.asarray(y, x0.dtype) - x0 @ jnp.asarray(A.T, x0.dtype)
        return -0.5 * (jnp.sum(r**2, -1) / v + A.shape[0] * jnp.log(2 * np.pi * v))

    return twisted(sampler, schedule, log_twist)

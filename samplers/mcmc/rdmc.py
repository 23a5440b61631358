"""Reverse diffusion Monte Carlo (Huang, Dong, Hao, Ma & Zhang, ICLR 2024, arXiv:2307.02037).

Target p ∝ exp(-f), given by ``model_fn`` as a log-density or a score (``target=``, as
the plain kernels of ``samplers.mcmc.common``). The Ornstein-Uhlenbeck process
x_t = a_t x_0 + sqrt(v_t) z, a_t = e^{-t}, v_t = 1 - e^{-2t}, started at p has the score

    grad log p_t(x) = (a_t E_q[x_0] - x) / v_t,   q_t(x_0 | x) ∝ p(x_0) exp(-|x - a_t x_0|^2 / (2 v_t)),

so reversing it needs only the posterior mean m = E_q[x_0], which RDMC estimates by
inner Langevin sampling of q_t. From x ~ N(0, I) ≈ p_T at T = ``horizon`` to ``t_end`` on a grid uniform in
lambda = log(a_t / sqrt(v_t)), each step estimates m and takes the exponential
integrator of the reverse SDE in data prediction (exact for the OU part; order 1 is the
DDPM posterior step, order 2 SDE-DPM-Solver++(2M), coefficients from
``samplers.sde.sde_dpm``), h = lambda_{k+1} - lambda_k:

    x_{k+1} = (sigma_{k+1} / sigma_k) e^{-h} x_k + a_{k+1} (1 - e^{-2h}) m_k (+ the 2M term in m_k - m_{k-1})
              + sigma_{k+1} sqrt(1 - e^{-2h}) z,   sigma_k = sqrt(v_{t_k}).

m is the weighted mean of ``num_particles`` inner particles per chain, carried in the
state from one outer step to the next: a sequential Monte Carlo sampler over the
posteriors q_{t_k}(. | x_k), the warm start that makes the estimate accurate at large t:

1. reweight by q_{t_k}(. | x_k) / q_{t_{k-1}}(. | x_{k-1}), a ratio of Gaussian factors
   (p cancels: no model call); systematic resampling where the weights' effective size
   falls below ``resample_threshold`` x n;
2. ``global_moves`` independence Metropolis-Hastings steps from g_t(. | x), the posterior
   that a N(0, ``init_scale``^2 I) target would have (acceptance ratio w(y') / w(y),
   w = p / N(0, init_scale^2 I), the Gaussian factor cancels): they move particles
   between separated modes, which local moves cannot;
3. ``inner_steps`` MALA (``inner="mala"``, exact for q_t) or ULA (``"ula"``) steps on q_t
   of size h_t = ``step_scale`` / (``smoothness`` + a_t^2 / v_t), the inverse of a bound on
   q_t's curvature (``smoothness`` bounds that of f);
4. m = the weighted mean of the particles over the inner iterates.

``init`` draws ``init_factor`` x n candidates per chain from g_T(. | x) and keeps n of them
resampled by the weights w (importance sampling of q_T; only with a log-density).
With ``final_draw`` a last step refreshes the particles on q_{t_end}(. | x) and returns one
drawn by weight: x_0 ~ q_t(. | x_t) with x_t ~ p_t is an exact draw of p, so the output
targets p itself; without it the output is x ~ p_{t_end}.

``target="score"`` gives no densities: only ULA inner moves, no global moves and
unweighted initial particles (g_T taken for q_T). ``nfe`` counts gradient evaluations per
chain: each inner or global move (and ``init``) calls ``model_fn`` once on the batch of
B x n particles (B x n x ``init_factor`` in ``init``), n evaluations a chain.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take
from samplers.grids import TimeGrid
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import check_target, evaluator, metropolis, sum_event
from samplers.mcmc.langevin import langevin_proposal, mala_log_accept
from samplers.ode.common import check_choice, check_order
from samplers.sde.sde_dpm import sde_dpm_coefficients

INNER = ("mala", "ula")


@struct.dataclass
class RDMCState:
    x: jax.Array  # (B, ...) the outer chains (after the final draw: the samples of p)
    i: jax.Array
    nfe: jax.Array  # gradient evaluations per chain
    particles: jax.Array  # (B, n, ...) inner particles on q_t(. | anchor)
    logdensity: jax.Array | None  # (B, n) log p at the particles; None for target="score"
    grad: jax.Array  # (B, n, ...) grad log p at the particles
    logw: jax.Array  # (B, n) normalised log weights of the particles for q at the last step's (t, anchor)
    anchor: jax.Array  # (B, ...) the x of the last step
    prev_mean: jax.Array  # (B, ...) the last step's estimate of E_q[x_0] (order 2)
    accept: jax.Array  # (B,) mean acceptance probability of the last step's MALA moves (1 for ULA)
    jump_accept: jax.Array  # (B,) the same for its global moves (0 without)


def ou_times(horizon: float, t_end: float, num_steps: int) -> np.ndarray:
    """num_steps + 1 OU times from ``horizon`` to ``t_end``, uniform in lambda = -log sqrt(e^{2t} - 1)."""
    lam = lambda t: -0.5 * np.log(np.expm1(2.0 * t))
    return 0.5 * np.log1p(np.exp(-2.0 * np.linspace(lam(horizon), lam(t_end), num_steps + 1)))


def ou_grid(ts: np.ndarray) -> TimeGrid:
    """The OU process x_t = e^{-t} x_0 + sqrt(1 - e^{-2t}) z at times ``ts`` as a ``TimeGrid``."""
    alpha, sigma = np.exp(-ts), np.sqrt(-np.expm1(-2.0 * ts))
    return TimeGrid(ts, alpha, sigma, np.log(alpha / sigma))


def systematic_resample(key, logw: jax.Array, num: int | None = None) -> jax.Array:
    """Per-row systematic resampling: log weights (B, n) -> ``num`` (default n) indices per row (B, num)."""
    b, n = logw.shape
    num = n if num is None else num
    cdf = jnp.cumsum(jax.nn.softmax(logw, axis=-1), axis=-1)
    u = (jnp.arange(num, dtype=logw.dtype)[None] + jax.random.uniform(key, (b, 1), logw.dtype)) / num
    return jnp.minimum(jnp.sum(cdf[:, None, :] < u[:, :, None], axis=-1), n - 1)  # searchsorted per row


def gather(arr: jax.Array | None, idx: jax.Array) -> jax.Array | None:
    """Entries ``idx`` (B, n) of per-particle ``arr`` (B, m, ...) along axis 1 (None passes through)."""
    if arr is None:
        return None
    return jnp.take_along_axis(arr, idx.reshape(idx.shape + (1,) * (arr.ndim - 2)), axis=1)


def rdmc(num_steps: int, horizon: float = 4.0, t_end: float = 1e-2, num_particles: int = 16, inner_steps: int = 4,
         global_moves: int | None = None, init_factor: int | None = None, inner: str | None = None,
         step_scale: float | None = None, smoothness: float = 1.0, init_scale: float = 1.0,
         resample_threshold: float = 0.5, order: int = 2, final_draw: bool = True, target: str = "logdensity",
         t: float = 0.0) -> Sampler:
    """Reverse diffusion Monte Carlo with ``num_steps`` outer steps (plus the final draw).

    ``model_fn(x, t)`` is the target's log-density (B,) or score at model time ``t``;
    ``init(x, key, model_fn)`` takes the starting chains x ~ N(0, I). ``global_moves``,
    ``init_factor`` and ``inner`` default to 1, 8, "mala" for a log-density and 0, 1, "ula"
    for a score; ``step_scale`` to 0.5 for MALA and 0.25 for ULA (whose O(h) bias enters
    the reweighting: give it more, smaller steps)."""
    check_target(target, "rdmc")
    dens = target == "logdensity"
    k_out = check_int("num_steps", num_steps)
    big_t = check_positive("horizon", horizon)
    t1 = check_positive("t_end", t_end)
    if not t1 < big_t:
        raise ValueError(f"t_end must be smaller than horizon; got t_end={t_end}, horizon={horizon}")
    n = check_int("num_particles", num_particles)
    k_in = check_int("inner_steps", inner_steps)
    n_jump = check_int("global_moves", (1 if dens else 0) if global_moves is None else global_moves, minimum=0)
    n_init = n * check_int("init_factor", (8 if dens else 1) if init_factor is None else init_factor)
    inner = check_choice("inner", ("mala" if dens else "ula") if inner is None else inner, INNER)
    if not dens and (inner == "mala" or n_jump or n_init > n):
        raise ValueError("inner='mala', global_moves > 0 and init_factor > 1 evaluate densities: they need "
                         f"target='logdensity'; got target={target!r}")
    c = check_positive("step_scale", (0.5 if inner == "mala" else 0.25) if step_scale is None else step_scale)
    lip = check_positive("smoothness", smoothness)
    kappa = check_positive("init_scale", init_scale)
    if isinstance(resample_threshold, bool) or not isinstance(resample_threshold, (int, float)) \
            or not 0.0 <= resample_threshold <= 1.0:
        raise ValueError(f"resample_threshold must be a number in [0, 1], got {resample_threshold!r}")
    thr = float(resample_threshold)
    order = check_order(order, (1, 2))
    evaluate = evaluator(target, t)

    ts = ou_times(big_t, t1, k_out)
    m = k_out + int(bool(final_draw))
    t_tab = ts[:m]
    t_last = np.concatenate([ts[:1], ts[: m - 1]])  # the time of the carried weights (t_0 after init)
    a_tab, v_tab = np.exp(-t_tab), -np.expm1(-2 * t_tab)
    al_tab, vl_tab = np.exp(-t_last), -np.expm1(-2 * t_last)
    h_tab = c / (lip + a_tab**2 / v_tab)
    # x_{k+1} = A x_k + B_0 m_k + B_1 m_{k-1} + g z; the final draw's row is unused
    pad = lambda arr: np.concatenate([arr, np.zeros((m - k_out,) + arr.shape[1:])])
    ei_a, ei_b, ei_g = (pad(arr) for arr in
                        sde_dpm_coefficients(ou_grid(ts), order, "dpmsolver++", "midpoint", lower_order_final=False))
    is_draw = np.arange(m) == k_out

    def flat(arr):  # (B, n, ...) -> (B n, ...)
        return arr.reshape((-1,) + arr.shape[2:])

    def log_factor(y, x, a, v):  # log of q_t's Gaussian factor per particle, (B, n)
        return -sum_event(flat(a * y - x[:, None]) ** 2).reshape(y.shape[:2]) / (2 * v)

    def reference(x, a, v):  # g_t(. | x) = N(centre, sd^2 I), the posterior under a N(0, kappa^2 I) target
        prec = 1.0 / kappa**2 + a**2 / v
        return (a / v / prec) * x, 1.0 / jnp.sqrt(prec)

    def log_w(y, ld):  # log q_t / g_t up to a constant: log p + |y|^2 / (2 kappa^2), per row of flat y
        return jnp.where(jnp.isnan(ld), -jnp.inf, ld + sum_event(y**2) / (2 * kappa**2))

    def init(x, key=None, model_fn=None):
        b, dt = x.shape[0], x.dtype
        k_y, k_res = jax.random.split(jax.random.PRNGKey(0) if key is None else key)
        centre, sd = reference(x, take(a_tab, 0, dt), take(v_tab, 0, dt))
        y = centre[:, None] + sd * jax.random.normal(k_y, (b, n_init) + x.shape[1:], dt)
        ld, g = evaluate(model_fn, flat(y))
        g = g.reshape(y.shape)
        if dens:
            ld = ld.reshape(b, n_init)
            idx = systematic_resample(k_res, log_w(flat(y), flat(ld)).reshape(b, n_init), n)
            y, ld, g = (gather(arr, idx) for arr in (y, ld, g))
        return RDMCState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.full((), n_init, jnp.int32), particles=y,
                         logdensity=ld, grad=g, logw=jnp.full((b, n), -np.log(n), dt), anchor=x,
                         prev_mean=jnp.zeros_like(x), accept=jnp.ones((b,), dt), jump_accept=jnp.zeros((b,), dt))

    def step(state, key, model_fn):
        x, i, dt = state.x, state.i, state.x.dtype
        b = x.shape[0]
        k_res, k_jump, k_move, k_draw, k_z = jax.random.split(key, 5)
        a, v, h = take(a_tab, i, dt), take(v_tab, i, dt), take(h_tab, i, dt)

        # 1. reweight to q_t(. | x), resample where degenerate
        y = state.particles
        logw = (state.logw + log_factor(y, x, a, v)
                - log_factor(y, state.anchor, take(al_tab, i, dt), take(vl_tab, i, dt)))
        lw = jax.nn.log_softmax(jnp.where(jnp.isnan(logw), -jnp.inf, logw), axis=-1)
        redo = jnp.exp(-jax.nn.logsumexp(2 * lw, axis=-1)) < thr * n
        idx = jnp.where(redo[:, None], systematic_resample(k_res, lw), jnp.arange(n)[None])
        y, ld, g = (gather(arr, idx) for arr in (y, state.logdensity, state.grad))
        lw = jnp.where(redo[:, None], -float(np.log(n)), lw)

        xr = jnp.repeat(x, n, axis=0)  # (B n, ...), the chain of each flat particle
        centre, sd = reference(xr, a, v)
        grad_q = lambda yf, gf: gf + a * (xr - a * yf) / v
        log_q = lambda yf, ldf: ldf - sum_event((xr - a * yf) ** 2) / (2 * v)

        # 2. global moves: independence Metropolis-Hastings from g_t(. | x)
        def jump(carry, k):
            yf, ldf, gf, acc = carry
            kz, ka = jax.random.split(k)
            y_new = centre + sd * jax.random.normal(kz, yf.shape, dt)
            ld_new, g_new = evaluate(model_fn, y_new)
            (yf, ldf, gf), _, log_a = metropolis(ka, log_w(y_new, ld_new) - log_w(yf, ldf), (y_new, ld_new, g_new),
                                                 (yf, ldf, gf))
            return (yf, ldf, gf, acc + jnp.exp(jnp.minimum(log_a, 0.0))), None

        # 3. local Langevin moves on q_t(. | x), keeping every iterate for the mean
        def move(carry, k):
            yf, ldf, gf, acc = carry
            kz, ka = jax.random.split(k)
            gq = grad_q(yf, gf)
            y_new = langevin_proposal(yf, gq, h, jax.random.normal(kz, yf.shape, dt))
            ld_new, g_new = evaluate(model_fn, y_new)
            if inner == "ula":
                return (y_new, ld_new, g_new, acc + 1.0), y_new
            log_a = mala_log_accept(yf, y_new, log_q(yf, ldf), log_q(y_new, ld_new), gq, grad_q(y_new, g_new), h)
            (yf, ldf, gf), _, log_a = metropolis(ka, log_a, (y_new, ld_new, g_new), (yf, ldf, gf))
            return (yf, ldf, gf, acc + jnp.exp(jnp.minimum(log_a, 0.0))), yf

        zero = jnp.zeros((b * n,), dt)
        carry = (flat(y), None if ld is None else flat(ld), flat(g), zero)
        if n_jump:
            carry, _ = jax.lax.scan(jump, carry, jax.random.split(k_jump, n_jump))
        jump_acc = carry[3]
        (yf, ldf, gf, acc), ys = jax.lax.scan(move, carry[:3] + (zero,), jax.random.split(k_move, k_in))
        y, g = yf.reshape(y.shape), gf.reshape(y.shape)
        ld = None if ldf is None else ldf.reshape(b, n)

        # 4. m = weighted mean over particles and iterates; the reverse-SDE step, or the final draw
        post_mean = jnp.einsum("bn,bn...->b...", jnp.exp(lw), ys.mean(axis=0).reshape(y.shape))
        x_sde = (take(ei_a, i, dt) * x + take(ei_b[:, 0], i, dt) * post_mean
                 + take(ei_b[:, 1], i, dt) * state.prev_mean + take(ei_g, i, dt) * jax.random.normal(k_z, x.shape, dt))
        pick = jax.random.categorical(k_draw, lw, axis=-1)
        x_draw = gather(y, pick[:, None])[:, 0]
        per = lambda s: s.reshape(b, n).mean(-1)
        return RDMCState(x=jnp.where(take(is_draw, i, bool), x_draw, x_sde), i=i + 1,
                         nfe=state.nfe + n * (n_jump + k_in), particles=y, logdensity=ld, grad=g, logw=lw, anchor=x,
                         prev_mean=post_mean, accept=per(acc) / k_in, jump_accept=per(jump_acc) / max(n_jump, 1))

    return Sampler(init=init, step=step, num_steps=m, nfe=n_init + m * n * (n_jump + k_in))

"""Linear inverse problems y = A x + s e, e ~ N(0, I), with a diffusion prior.

* ``mixture_posterior``: the exact posterior of a Gaussian-mixture prior (a mixture: per
  component a Gaussian conditioning, weight times the evidence N(y; A m_k, A S_k A' + s^2 I)).
* ``dps`` (Chung et al. 2023, Alg. 1): the base sampler's step minus
  zeta_i grad_x |y - A x0_hat(x)|^2 with zeta_i = zeta / |y - A x0_hat(x)| (one model call and
  its backward pass a step). Biased: it samples no known distribution; the benchmark reports
  its distance to the exact posterior.
* ``svd_smc``: an SMC sampler whose target at the data level is the base sampler's law times
  the exact likelihood, built in the SVD basis of A = U diag(s) V' as MCGdiff (Cardoso et al.
  2023). With xb = V' x, yb = U' y, the observation of coordinate j is yb_j = s_j xb_j + s e_j;
  at level t (x_t = a x0 + g eps) the potential is

      G_t(x) = prod_{j: s_j > 0} N(yb_j; (s_j / a) xb_j, s^2 + (s_j g / a)^2),

  the likelihood of yb if x0 were x_t / a with noise g / a; at sigma = 0 it is the exact
  likelihood. The base kernel N(mean, scale^2 I) is Gaussian and G is a Gaussian in each
  coordinate of xb, so the locally optimal proposal p(x' | x) G_{i+1}(x') / Z_i(x) and its
  normaliser Z_i(x) are closed-form (a fully adapted auxiliary particle filter, Pitt & Shephard
  1999): the weights become W Z_i / G_i, the particles are resampled by them when their ESS
  falls below ``ess_threshold`` N (then the weights reset to uniform, else they carry over),
  then propagated by the proposal (the last step always resamples: the output is unweighted);
  the log-evidence estimate adds log sum_k W_k Z_i(x_k) / G_i(x_k). Particles are the leading axis
  of x; several problems are a vmap. The posterior is the base model's: exact as its
  discretisation error and the particles' Monte Carlo error vanish.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.scipy.special import logsumexp

from models.analytic import GaussianMixture
from samplers.core import Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid
from samplers.param import to_x0_eps
from samplers.schedules import Schedule
from samplers.smc import resampling
from samplers.smc.engine import check_threshold, reweight_resample
from samplers.checks import check_number, check_positive
from samplers.smc.search import check_base, draw, kernel


def check_problem(A, y, noise_std) -> tuple[np.ndarray, np.ndarray, float]:
    A = np.asarray(A, np.float64)
    y = np.asarray(y, np.float64)
    if A.ndim != 2:
        raise ValueError(f"A must be a matrix (m, d), got shape {A.shape}")
    if y.shape != (A.shape[0],):
        raise ValueError(f"y must have shape ({A.shape[0]},) (the rows of A), got {y.shape}")
    return A, y, check_positive("noise_std", noise_std)


def _conditioned(prior: GaussianMixture, A, y, noise_std: float):
    """Per component: log(w_k N(y; A m_k, C_k)), C_k = A S_k A' + s^2 I, and the conditioned
    mean m_k + K_k (y - A m_k) and covariance S_k - K_k A S_k, K_k = S_k A' C_k^-1."""
    A, y, s = check_problem(A, y, noise_std)
    if A.shape[1] != prior.dim:
        raise ValueError(f"A must have {prior.dim} columns (the prior's dimension), got {A.shape[1]}")
    logw, means, covs = [], [], []
    for w, m, S in zip(prior.weights, prior.means, prior.covs):
        C = A @ S @ A.T + s**2 * np.eye(len(y))
        K = S @ A.T @ np.linalg.inv(C)
        r = y - A @ m
        logw.append(np.log(w) - 0.5 * (r @ np.linalg.solve(C, r) + np.linalg.slogdet(2 * np.pi * C)[1]))
        cov = S - K @ A @ S
        means.append(m + K @ r)
        covs.append((cov + cov.T) / 2)
    return np.array(logw), np.array(means), np.array(covs)


def mixture_posterior(prior: GaussianMixture, A, y, noise_std: float) -> GaussianMixture:
    """The exact posterior p(x | y) of the prior mixture under y = A x + noise_std e."""
    logw, means, covs = _conditioned(prior, A, y, noise_std)
    return GaussianMixture(np.exp(logw - logw.max()), means, covs)


def mixture_evidence(prior: GaussianMixture, A, y, noise_std: float) -> float:
    """log p(y) = log sum_k w_k N(y; A m_k, A S_k A' + s^2 I)."""
    return float(np.logaddexp.reduce(_conditioned(prior, A, y, noise_std)[0]))


# -- DPS ----------------------------------------------------------------------------------------------

def dps(sampler: Sampler, schedule: Schedule, A, y, noise_std: float, zeta: float = 1.0) -> Sampler:
    """DPS (Chung et al. 2023, Alg. 1) on a memoryless Gaussian-transition ``sampler``: x_{i+1} =
    base step(x_i) - zeta / |r| grad_{x_i} |r|^2 with r = y - A x0_hat(x_i) per sample (the grad
    through the model). ``noise_std`` is only checked: DPS does not use it."""
    check_base(sampler)
    A, y, _ = check_problem(A, y, noise_std)
    zeta = check_number("zeta", zeta, 0.0)

    def step(state, key, model_fn):
        x, dt = state.x, state.x.dtype
        At, yt = jnp.asarray(A, dt), jnp.asarray(y, dt)

        def loss(x):
            tr = kernel(sampler, x, state.i, model_fn)
            x0 = tr.output if tr.space == "x0" else to_x0_eps(tr.output, x, tr.t, schedule, tr.space)[0]
            sq = jnp.sum((yt - x0.reshape(x.shape[0], -1) @ At.T) ** 2, -1)
            return jnp.sum(sq), (tr, sq)

        grad, (tr, sq) = jax.grad(loss, has_aux=True)(x)
        zeta_i = zeta / jnp.sqrt(sq + jnp.finfo(dt).tiny)
        x = draw(tr.mean, tr.scale, key) - zeta_i.reshape((-1,) + (1,) * (x.ndim - 1)) * grad
        return tr.state.replace(x=x)

    return Sampler(init=sampler.init, step=step, num_steps=sampler.num_steps, nfe=sampler.nfe)


# -- SMC in the SVD basis -------------------------------------------------------------------------------

@struct.dataclass
class SVDSMCState:
    x: jax.Array  # (N, d) particles
    i: jax.Array
    nfe: jax.Array
    log_w: jax.Array  # (N,) log-weights for the target at level i
    log_z: jax.Array  # running log-evidence estimate
    ess: jax.Array  # ESS of the last step's weights
    ancestors: jax.Array  # (N,) the last ancestors


def svd_smc(sampler: Sampler, grid: TimeGrid, A, y, noise_std: float, resampler: str = "systematic",
            ess_threshold: float = 0.5) -> Sampler:
    """SMC for y = A x + noise_std e targeting (base law) x exact likelihood, in the SVD basis of A
    (module docstring). ``grid`` is the base sampler's time grid (levels' alpha, sigma); x is
    (N, d) flat particles. nfe = num_steps (one model call a step for all particles)."""
    check_base(sampler)
    check_grid(grid)
    A, y, s = check_problem(A, y, noise_std)
    if grid.num_steps != sampler.num_steps:
        raise ValueError(f"grid must be the sampler's grid ({sampler.num_steps} steps), got {grid.num_steps} steps")
    resample = resampling.check_resampler(resampler)
    ess_threshold = check_threshold(ess_threshold)
    m, d = A.shape
    U, sv, Vt = np.linalg.svd(A, full_matrices=True)  # A = U[:, :r] diag(sv) Vt[:r]
    r = len(sv)
    obs = sv > 1e-12 * sv.max()
    yb = (U.T @ y)[:r]
    # potential of level l in xb_j (j < r, observed): N(a yb_j / s_j; xb_j, w_lj) / (s_j / a)
    alpha, sigma = grid.alpha, grid.sigma
    with np.errstate(divide="ignore"):
        ratio = np.where(obs, np.divide(1.0, sv, where=obs, out=np.zeros_like(sv)), 0.0)  # 1 / s_j
    centre = alpha[:, None] * (yb * ratio)[None]  # (L, r)
    var = (alpha[:, None] * s * ratio[None]) ** 2 + sigma[:, None] ** 2
    log_c = np.where(obs[None], np.log(np.where(obs, sv, 1.0))[None] - np.log(alpha)[:, None], 0.0)
    tables = [np.asarray(t, np.float64) for t in (centre, var, log_c)]
    mask = obs.astype(np.float64)

    def log_g(level, xb, dt):
        """log G_level(x) from the first r coordinates of xb (N, r)."""
        c, v, lc = (jnp.asarray(t, dt)[level] for t in tables)
        ll = -0.5 * ((xb - c) ** 2 / v + jnp.log(2 * jnp.pi * v)) - lc
        return jnp.sum(ll * jnp.asarray(mask, dt), -1)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x must be particles (N, {d}) on the leading axis, got shape {x.shape}")
        lw = log_g(0, (x @ jnp.asarray(Vt.T, x.dtype))[:, :r], x.dtype)
        z = jnp.zeros((), jnp.int32)
        n = x.shape[0]
        return SVDSMCState(x=x, i=z, nfe=z, log_w=lw, log_z=logsumexp(lw) - jnp.log(n),
                           ess=jnp.asarray(n, x.dtype), ancestors=jnp.arange(n))

    def step(state, key, model_fn):
        x, dt = state.x, state.x.dtype
        V = jnp.asarray(Vt.T, dt)
        kr, kz = jax.random.split(key)
        tr = kernel(sampler, x, state.i, model_fn)
        mb = tr.mean @ V  # base kernel mean in the SVD basis
        tau2 = jnp.asarray(tr.scale, dt) ** 2
        c, v, lc = (jnp.asarray(t, dt)[state.i + 1] for t in tables)
        mo = mb[:, :r]
        log_zi = jnp.sum((-0.5 * ((mo - c) ** 2 / (v + tau2) + jnp.log(2 * jnp.pi * (v + tau2))) - lc)
                         * jnp.asarray(mask, dt), -1)
        anc, log_w, log_inc, ess = reweight_resample(
            kr, resampling.normalise(state.log_w), log_zi - log_g(state.i, (x @ V)[:, :r], dt), resample,
            ess_threshold, force=state.i == sampler.num_steps - 1)  # the last step resamples: unweighted output
        # the optimal proposal: per observed coordinate N(mean, tau2) x N(c; ., v), else the base kernel
        prec = 1.0 / tau2 + 1.0 / v
        post = jnp.where(jnp.asarray(obs), (mo / tau2 + c / v) / prec, mo)
        std = jnp.where(jnp.asarray(obs), jnp.sqrt(1.0 / prec), jnp.sqrt(tau2))
        mean = jnp.concatenate([post, mb[:, r:]], -1)[anc]
        scale = jnp.concatenate([jnp.broadcast_to(std, (r,)), jnp.broadcast_to(jnp.sqrt(tau2), (d - r,))])
        xb = mean + scale * jax.random.normal(kz, mean.shape, dt)
        return SVDSMCState(x=xb @ V.T, i=state.i + 1, nfe=state.nfe + 1, log_w=log_w,
                           log_z=state.log_z + log_inc, ess=ess, ancestors=anc)

    return Sampler(init=init, step=step, num_steps=sampler.num_steps, nfe=sampler.nfe)

"""Targets with known moments and the ESS-based checks of the MCMC tests.

Tolerances: an estimate from draws (num_draws, num_chains) is compared with the
exact value within ``K_SIGMA`` Monte Carlo standard errors sd / sqrt(ESS), the ESS
from ``samplers.diagnostics.ess`` (Geyer's initial monotone sequence over all
chains). Means are checked per coordinate, covariances per entry through the
series (x_i - mu_i)(x_j - mu_j) with the exact mean mu, mixture weights through
the indicator of the half-space x_1 > 0, whose exact probability is
sum_k w_k Phi(mu_k1 / sd_k1). Samplers that return independent draws (annealed
Langevin, the log-concave chain, RDMC) are treated as one chain of N draws.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from scipy.stats import norm

from models.analytic import GaussianMixture
from samplers.diagnostics import ess

K_SIGMA = 4.0

# Correlated Gaussian, d = 3.
MU = np.array([1.0, -1.0, 0.5])
SIGMA = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, 0.3], [0.0, 0.3, 0.5]])
PREC = np.linalg.inv(SIGMA)
GAUSS = GaussianMixture([1.0], MU[None], SIGMA[None])


def gauss_logdensity(x, t=None):
    """Unnormalised log N(x; MU, SIGMA), per chain."""
    z = x - jnp.asarray(MU, x.dtype)
    return -0.5 * jnp.einsum("bi,ij,bj->b", z, jnp.asarray(PREC, x.dtype), z)


def gauss_score(x, t=None):
    return -(x - jnp.asarray(MU, x.dtype)) @ jnp.asarray(PREC, x.dtype)


def noisy(gm: GaussianMixture, alpha: float, sigma: float) -> GaussianMixture:
    """The law of alpha x0 + sigma eps, x0 ~ ``gm``."""
    return GaussianMixture(gm.weights, alpha * gm.means, alpha**2 * gm.covs + sigma**2 * np.eye(gm.dim))


def mixture(sep: float, weights=(0.3, 0.7), sd: float = 0.5) -> GaussianMixture:
    """Two isotropic components at (-sep, 0) and (+sep, 0) in 2-D."""
    return GaussianMixture(weights, [[-sep, 0.0], [sep, 0.0]], [[sd**2, sd**2], [sd**2, sd**2]])


def mixture_logdensity(gm: GaussianMixture):
    """A cheap closed-form log-density of an isotropic 2-component ``mixture`` (unnormalised)."""
    mu, var, logw = gm.means, gm.covs[0, 0, 0], np.log(gm.weights)

    def fn(x, t=None):
        terms = [logw[k] - jnp.sum((x - jnp.asarray(mu[k], x.dtype)) ** 2, -1) / (2 * var) for k in range(2)]
        return logsumexp(jnp.stack(terms), axis=0)

    return fn


def right_mass(gm: GaussianMixture, alpha: float = 1.0, sigma: float = 0.0, threshold: float = 0.0) -> float:
    """Exact P(x_1 > threshold) of x = alpha x0 + sigma eps, x0 ~ gm."""
    sd = np.sqrt(alpha**2 * gm.covs[:, 0, 0] + sigma**2)
    return float(np.sum(gm.weights * norm.cdf((alpha * gm.means[:, 0] - threshold) / sd)))


def _within(series: np.ndarray, exact, what: str):
    est = series.mean(axis=(0, 1))
    sd = series.reshape((-1,) + series.shape[2:]).std(axis=0)
    se = sd / np.sqrt(ess(series))
    err = np.abs(est - exact)
    assert np.all(err <= K_SIGMA * se), f"{what}: estimate {est}, exact {exact}, |err| {err} > {K_SIGMA} x mcse {se}"
    return err / se


def check_moments(draws, mean, cov, what: str = "") -> float:
    """Assert mean and covariance within K_SIGMA mcse; returns the largest |err| / mcse."""
    x = np.asarray(draws, np.float64)
    mean, cov = np.asarray(mean), np.asarray(cov)
    z = x - mean
    iu = np.triu_indices(x.shape[-1])
    prods = (z[..., :, None] * z[..., None, :])[..., iu[0], iu[1]]
    r1 = _within(x, mean, f"{what} mean")
    r2 = _within(prods, cov[iu], f"{what} covariance (upper triangle)")
    return float(max(r1.max(), r2.max()))


def check_right_mass(draws, exact: float, what: str = "") -> float:
    """Assert the fraction of draws with x_1 > 0 within K_SIGMA mcse of ``exact``."""
    ind = (np.asarray(draws)[..., 0] > 0).astype(np.float64)[..., None]
    return float(_within(ind, np.array([exact]), f"{what} P(x_1 > 0)").max())


def iid(samples) -> np.ndarray:
    """Independent samples (N, d) as one chain of N draws: (N, 1, d)."""
    return np.asarray(samples)[:, None]


VARIANCE_ERRORS = (0.9, 1.1)  # the controls' 10% variance errors


def scale_variance(draws, mean, factor: float) -> np.ndarray:
    """``draws`` spread about ``mean`` by sqrt(``factor``): their covariance times ``factor``."""
    mean = np.asarray(mean, np.float64)
    return mean + np.sqrt(factor) * (np.asarray(draws, np.float64) - mean)


def check_moments_and_control(draws, mean, cov, what: str = "") -> float:
    """``check_moments``, and its control: the same check rejects the same draws with a 10% variance
    error either way (``VARIANCE_ERRORS``), so the draws resolve such an error."""
    worst = check_moments(draws, mean, cov, what)
    for factor in VARIANCE_ERRORS:
        try:
            check_moments(scale_variance(draws, mean, factor), mean, cov, what)
        except AssertionError:
            continue
        raise AssertionError(f"{what}: the check accepts a {factor - 1:+.0%} variance error (control)")
    return worst

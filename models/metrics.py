"""Sample-quality metrics: Frechet distance and FID, sliced Wasserstein, RBF-kernel MMD, and the
exact log-likelihood under a Gaussian mixture.

* Frechet distance between N(mu1, C1) and N(mu2, C2) (Dowson & Landau 1982; FID, Heusel et al. 2017):
  ``|mu1 - mu2|^2 + tr C1 + tr C2 - 2 tr (C1^1/2 C2 C1^1/2)^1/2``, in float64 with symmetric
  eigendecompositions (equal to pytorch-fid's ``tr sqrtm(C1 C2)``, and stable for the
  rank-deficient covariances of fewer samples than features).
* Sliced Wasserstein (Rabin et al. 2011; Bonneel et al. 2015): ``SW_p^p = E_theta W_p^p`` of the
  1-D projections on random unit directions, each 1-D distance exact (sorted quantiles, any n, m).
* MMD^2 with the RBF kernel ``k(x, y) = exp(-|x - y|^2 / (2 h^2))`` (Gretton et al. 2012),
  biased (V) or unbiased (U) estimate; ``h`` by the median heuristic when not given.
Images are flattened to vectors. FID features come from ``models.inception``.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from models.analytic import GaussianMixture


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64, unbiased) of features (N, D), N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape (N, D) with N >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(c):
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Frechet (2-Wasserstein) distance between the Gaussians N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.ndim != 1:
        raise ValueError(f"mu1 must be a vector, got shape {mu1.shape}")
    d = mu1.shape[0]
    for name, value, shape in (("mu2", mu2, (d,)), ("cov1", cov1, (d, d)), ("cov2", cov2, (d, d))):
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape} to match mu1 of shape {mu1.shape}, got {value.shape}")
    s1 = _sqrt_psd(cov1)
    cross = np.linalg.eigvalsh((s1 @ cov2 @ s1 + (s1 @ cov2 @ s1).T) / 2)
    tr_sqrt = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)


def fid(features_a, features_b) -> float:
    """FID: the Frechet distance between Gaussians fitted to two sets of Inception pool3 features."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def _flat(x, name):
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {x.shape}")
    return x.reshape(x.shape[0], -1)


def _wasserstein_1d_pow(xs, ys, p: float):
    """W_p^p between the empirical measures of sorted columns xs (n, L) and ys (m, L): integral of
    |F^-1(u) - G^-1(u)|^p over u, exact on the merged quantile breakpoints (static n, m)."""
    n, m = xs.shape[0], ys.shape[0]
    u = np.unique(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
    width = np.diff(np.concatenate([[0.0], u]))
    mid = u - width / 2
    ix, iy = np.minimum((mid * n).astype(int), n - 1), np.minimum((mid * m).astype(int), m - 1)
    return jnp.einsum("k,kl->l", jnp.asarray(width, xs.dtype), jnp.abs(xs[ix] - ys[iy]) ** p)


def sliced_wasserstein(x, y, key, num_projections: int = 128, p: float = 2.0) -> jax.Array:
    """SW_p between the sample sets x (n, ...) and y (m, ...) over ``num_projections`` random directions."""
    x, y = _flat(x, "x"), _flat(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if num_projections < 1 or p < 1:
        raise ValueError(f"num_projections must be >= 1 and p >= 1, got {num_projections} and {p}")
    theta = jax.random.normal(key, (x.shape[1], num_projections), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=0, keepdims=True)
    xs, ys = jnp.sort(x @ theta, axis=0), jnp.sort(y.astype(x.dtype) @ theta, axis=0)
    return jnp.mean(_wasserstein_1d_pow(xs, ys, p)) ** (1.0 / p)


def _sq_dists(a, b):
    return jnp.maximum(jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None] - 2.0 * a @ b.T, 0.0)


def median_bandwidth(x, y) -> jax.Array:
    """Median heuristic: the median distance between distinct points of the pooled sample."""
    z = jnp.concatenate([_flat(x, "x"), _flat(y, "y")])
    d2 = _sq_dists(z, z)
    off = ~jnp.eye(z.shape[0], dtype=bool)
    return jnp.sqrt(jnp.nanmedian(jnp.where(off, d2, jnp.nan)))


def mmd2(x, y, bandwidth: float | Sequence[float] | None = None, unbiased: bool = False) -> jax.Array:
    """Squared MMD between x (n, ...) and y (m, ...) with the RBF kernel (a sum over several bandwidths).

    Biased: mean K_xx + mean K_yy - 2 mean K_xy (>= 0, 0 for identical sets); unbiased drops the
    diagonals of K_xx and K_yy (needs n, m >= 2; may be slightly negative).
    """
    x, y = _flat(x, "x"), _flat(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("unbiased MMD needs at least 2 samples in x and in y")
    if bandwidth is None:
        h = median_bandwidth(x, y)[None]
    else:
        h = np.atleast_1d(np.asarray(bandwidth, np.float64))
        if h.ndim != 1 or not np.all(h > 0):
            raise ValueError(f"bandwidth must be a positive number or a sequence of them, got {bandwidth}")
        h = jnp.asarray(h, x.dtype)
    kernel = lambda d2: jnp.sum(jnp.exp(-d2[..., None] / (2.0 * h**2)), axis=-1)
    kxx, kyy, kxy = kernel(_sq_dists(x, x)), kernel(_sq_dists(y, y)), kernel(_sq_dists(x, y))
    n, m = x.shape[0], y.shape[0]
    if unbiased:
        sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
        syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    else:
        sxx, syy = jnp.mean(kxx), jnp.mean(kyy)
    return sxx + syy - 2.0 * jnp.mean(kxy)


def gmm_log_likelihood(gmm: GaussianMixture, x) -> jax.Array:
    """Mean exact log-density of samples x (N, d) under the Gaussian mixture (``GaussianMixture.log_prob``)."""
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[1] != gmm.dim:
        raise ValueError(f"x must have shape (N, {gmm.dim}), got {x.shape}")
    return jnp.mean(gmm.log_prob(x))

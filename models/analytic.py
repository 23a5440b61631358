"""Gaussian mixtures with exact noise predictions under every schedule.

p_0 = sum_k w_k N(mu_k, Sigma_k). Under x_t = alpha x_0 + sigma eps the marginal is
p_t = sum_k w_k N(alpha mu_k, alpha^2 Sigma_k + sigma^2 I), so with
Sigma_k = U_k diag(s_k) U_k^T and r_k(x) the posterior component weights,

    score(x) = -sum_k r_k(x) U_k diag(1 / (alpha^2 s_k + sigma^2)) U_k^T (x - alpha mu_k),
    eps = -sigma score,  x0 = sum_k r_k (mu_k + alpha Sigma_k A_k^{-1} (x - alpha mu_k))  (Tweedie),

with A_k = alpha^2 Sigma_k + sigma^2 I; both are finite at alpha = 0 and at sigma = 0.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from samplers.param import check_prediction, from_x0_eps
from samplers.schedules import Schedule


class GaussianMixture:
    """Mixture of Gaussians with full (K, d, d) or diagonal (K, d) covariances."""

    def __init__(self, weights, means, covs):
        weights = np.asarray(weights, np.float64)
        means = np.asarray(means, np.float64)
        covs = np.asarray(covs, np.float64)
        if weights.ndim != 1 or np.any(weights <= 0):
            raise ValueError("weights must be a 1-D array of positive numbers")
        k, d = means.shape
        if len(weights) != k:
            raise ValueError(f"weights has {len(weights)} entries but means has {k} rows")
        self.diagonal = covs.shape == (k, d)
        if self.diagonal:
            if np.any(covs <= 0):
                raise ValueError("diagonal covariances must be positive")
            self.eigvals, self.eigvecs = covs, None
        elif covs.shape == (k, d, d):
            vals, vecs = np.linalg.eigh(covs)
            if np.any(vals <= 0):
                raise ValueError("covariances must be positive definite")
            self.eigvals, self.eigvecs = vals, vecs
        else:
            raise ValueError(f"covs must have shape {(k, d)} or {(k, d, d)}, got {covs.shape}")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = covs if not self.diagonal else np.stack([np.diag(c) for c in covs])
        self.dim = d

    # -- moments ---------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        m = self.mean
        second = np.einsum("k,kij->ij", self.weights, self.covs + np.einsum("ki,kj->kij", self.means, self.means))
        return second - np.outer(m, m)

    # -- densities -------------------------------------------------------------
    def _project(self, v):
        """U_k^T v for v of shape (B, K, d)."""
        if self.eigvecs is None:
            return v
        return jnp.einsum("kij,bki->bkj", jnp.asarray(self.eigvecs, v.dtype), v)

    def _unproject(self, z):
        if self.eigvecs is None:
            return z
        return jnp.einsum("kij,bkj->bki", jnp.asarray(self.eigvecs, z.dtype), z)

    def _components(self, x, alpha, sigma):
        """Component log-weights (B, K) and whitened residuals z / lam, in the eigenbasis."""
        dt = x.dtype
        alpha, sigma = jnp.asarray(alpha, dt), jnp.asarray(sigma, dt)
        s = jnp.asarray(self.eigvals, dt)[None]
        lam = alpha**2 * s + sigma**2  # (1, K, d)
        z = self._project(x[:, None, :] - alpha * jnp.asarray(self.means, dt)[None])
        logn = -0.5 * jnp.sum(z**2 / lam + jnp.log(lam), -1) - 0.5 * self.dim * float(np.log(2 * np.pi))
        return jnp.log(jnp.asarray(self.weights, dt))[None] + logn, z / lam, s

    def log_prob_t(self, x, alpha, sigma):
        """log p_t(x) of x = alpha x0 + sigma eps."""
        logits, _, _ = self._components(x, alpha, sigma)
        return logsumexp(logits, axis=-1)

    def log_prob(self, x):
        """Exact log density of the data distribution."""
        return self.log_prob_t(x, 1.0, 0.0)

    def score_t(self, x, alpha, sigma):
        """grad_x log p_t(x)."""
        logits, zl, _ = self._components(x, alpha, sigma)
        r = jax.nn.softmax(logits, axis=-1)
        return -jnp.einsum("bk,bkd->bd", r, self._unproject(zl))

    def denoise(self, x, alpha, sigma):
        """Exact (E[x0 | x], E[eps | x]); finite for alpha = 0 or sigma = 0 alike."""
        dt = x.dtype
        logits, zl, s = self._components(x, alpha, sigma)
        r = jax.nn.softmax(logits, axis=-1)
        x0 = jnp.asarray(self.means, dt)[None] + jnp.asarray(alpha, dt) * self._unproject(s * zl)
        eps = jnp.asarray(sigma, dt) * self._unproject(zl)
        return jnp.einsum("bk,bkd->bd", r, x0), jnp.einsum("bk,bkd->bd", r, eps)

    # -- model functions ---------------------------------------------------------
    def model_fn(self, schedule: Schedule, predicts: str = "eps") -> Callable:
        """Exact ``model_fn(x, t)`` of the given parameterisation under ``schedule``."""
        return denoiser_model_fn(self.denoise, schedule, predicts)

    def log_prob_fn(self, schedule: Schedule | None = None) -> Callable:
        """``fn(x, t) -> log p_t(x)``; the data density when no schedule is given."""
        if schedule is None:
            return lambda x, t=None: self.log_prob(x)
        return lambda x, t: self.log_prob_t(x, schedule.alpha(t), schedule.sigma(t))

    def sample(self, key, n: int, dtype=jnp.float32):
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, len(self.weights), (n,), p=jnp.asarray(self.weights))
        z = jax.random.normal(kz, (n, self.dim), dtype)
        chol = np.linalg.cholesky(self.covs)
        return jnp.asarray(self.means, dtype)[comp] + jnp.einsum("bij,bj->bi", jnp.asarray(chol, dtype)[comp], z)


def denoiser_model_fn(denoise: Callable, schedule: Schedule, predicts: str = "eps") -> Callable:
    """``model_fn(x, t)`` of the given parameterisation from ``denoise(x, alpha, sigma) -> (x0, eps)``."""
    check_prediction(predicts)

    def fn(x, t):
        t = jnp.asarray(t, x.dtype)
        x0, eps = denoise(x, schedule.alpha(t), schedule.sigma(t))
        return from_x0_eps(x0, eps, x, t, schedule, predicts)

    return fn


class GuidedMixture:
    """Classifier-free guidance (Ho & Salimans 2022) of a conditional mixture against an unconditional one,
    exactly: u + scale (c - u) for x0 and eps alike (both are affine in each other at fixed x, t), so its
    PF-ODE is solved by ``samplers.reference`` like any other denoiser's. ``scale`` = 1 is ``cond``."""

    def __init__(self, cond: GaussianMixture, uncond: GaussianMixture, scale: float):
        if cond.dim != uncond.dim:
            raise ValueError(f"cond and uncond must have one dimension, got {cond.dim} and {uncond.dim}")
        if not np.isscalar(scale) or not np.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale!r}")
        self.cond, self.uncond, self.scale, self.dim = cond, uncond, float(scale), cond.dim

    def denoise(self, x, alpha, sigma):
        (xc, ec), (xu, eu) = self.cond.denoise(x, alpha, sigma), self.uncond.denoise(x, alpha, sigma)
        return xu + self.scale * (xc - xu), eu + self.scale * (ec - eu)

    def model_fn(self, schedule: Schedule, predicts: str = "eps") -> Callable:
        return denoiser_model_fn(self.denoise, schedule, predicts)


def random_mixture(dim: int = 2, num_components: int = 3, seed: int = 0, spread: float = 2.0,
                   scale: float = 0.3, diagonal: bool = False) -> GaussianMixture:
    """A reproducible mixture with random means, weights and (full or diagonal) covariances."""
    rng = np.random.default_rng(seed)
    means = spread * rng.standard_normal((num_components, dim))
    weights = rng.uniform(0.5, 1.5, num_components)
    if diagonal:
        covs = scale**2 * rng.uniform(0.5, 1.5, (num_components, dim))
    else:
        a = rng.standard_normal((num_components, dim, dim)) / np.sqrt(dim)
        covs = scale**2 * (np.einsum("kij,klj->kil", a, a) + 0.5 * np.eye(dim))
    return GaussianMixture(weights, means, covs)

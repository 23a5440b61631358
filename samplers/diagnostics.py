"""MCMC diagnostics: effective sample size, split R-hat, Monte Carlo standard error,
acceptance rate. Post-processing in float64 numpy.

Draws are laid out as ``sample(..., trajectory=lambda s: s.x)`` returns them:
``(num_draws, num_chains, *event)``; every statistic is per event entry.

* ``ess``: the multi-chain effective sample size of Stan / ArviZ / blackjax
  (Geyer 1992; Vehtari et al. 2021, eqs. 10-11): per-chain autocovariances by
  FFT, rho_t = 1 - (W - mean_j acov_j(t)) / var+, truncated by Geyer's initial
  positive sequence of pair sums P_k = rho_{2k} + rho_{2k+1}, k < K, made monotone
  (initial monotone sequence), tau = -1 + 2 sum_k P_k + max(rho_{2K}, 0), ESS = N M / tau
  (tau floored at 1 / log10(N M), as blackjax and ArviZ do).
* ``split_rhat``: Gelman et al. (BDA3, 11.4) on chains split in halves,
  R = sqrt(var+ / W) with var+ = (n - 1)/n W + B/n; ``rank=True`` gives the
  rank-normalised max(bulk, folded) version of Vehtari et al. (2021).
* ``mcse``: sd / sqrt(ESS), the standard error of a chain average.
* ``acceptance_rate``: mean of min(1, exp(log_accept)) (the ``log_accept``
  field of MALA / HMC states).
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata


def _draws(x, min_draws: int = 2) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim < 2:
        raise ValueError(f"draws must have shape (num_draws, num_chains, ...), got shape {x.shape}")
    if x.shape[0] < min_draws:
        raise ValueError(f"need at least {min_draws} draws per chain, got {x.shape[0]}")
    return x


def autocovariance(x) -> np.ndarray:
    """Per-chain autocovariance (1/n) sum_s (x_s - xbar)(x_{s+t} - xbar) along axis 0, by FFT."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    c = x - x.mean(axis=0)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(c, n=size, axis=0)
    return np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n] / n


def ess(x) -> np.ndarray:
    """Effective sample size of draws ``(num_draws, num_chains, *event)`` -> ``event`` shape."""
    x = _draws(x, 4)
    n, m = x.shape[:2]
    acov = autocovariance(x)  # (n, m, ...)
    w = acov[0].mean(axis=0) * n / (n - 1.0)  # mean within-chain variance
    var_plus = w * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=0).var(axis=0, ddof=1)
    degenerate = ~(var_plus > 0)
    var_plus = np.where(degenerate, 1.0, var_plus)
    rho = 1.0 - (w - acov.mean(axis=1)) / var_plus  # (n, ...)
    rho[0] = 1.0
    k = n // 2
    pairs = rho[0:2 * k:2] + rho[1:2 * k:2]  # (k, ...)
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)  # initial positive sequence
    mono = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.sum(np.where(positive, mono, 0.0), axis=0)
    # Geyer's improvement (as ArviZ, blackjax): add rho_{2K} after the last positive pair when positive.
    nxt = np.take_along_axis(rho, np.minimum(2 * positive.sum(axis=0, keepdims=True), n - 1), axis=0)[0]
    tau = tau + np.where((2 * positive.sum(axis=0) < n) & (nxt > 0), nxt, 0.0)
    tau = np.maximum(tau, 1.0 / np.log10(n * m))
    return np.where(degenerate, 0.0, n * m / tau)


def mcse(x) -> np.ndarray:
    """Monte Carlo standard error of the mean of draws ``(num_draws, num_chains, *event)``."""
    x = _draws(x, 4)
    sd = x.reshape((-1,) + x.shape[2:]).std(axis=0, ddof=1)
    return sd / np.sqrt(ess(x))


def _rhat(x) -> np.ndarray:
    n = x.shape[0]
    w = x.var(axis=0, ddof=1).mean(axis=0)
    b_over_n = x.mean(axis=0).var(axis=0, ddof=1)
    return np.sqrt(((n - 1.0) / n * w + b_over_n) / w)


def _rank_normal(x) -> np.ndarray:
    """Blom rank-normalisation over all draws and chains together."""
    flat = x.reshape((-1,) + x.shape[2:])
    r = rankdata(flat, axis=0)
    return ndtri((r - 0.375) / (flat.shape[0] + 0.25)).reshape(x.shape)


def split_rhat(x, rank: bool = False) -> np.ndarray:
    """Split R-hat of draws ``(num_draws, num_chains, *event)`` (at least 2 chains' halves)."""
    x = _draws(x, 4)
    half = x.shape[0] // 2
    s = np.concatenate([x[:half], x[half:2 * half]], axis=1)
    if not rank:
        return _rhat(s)
    folded = np.abs(s - np.median(s.reshape((-1,) + s.shape[2:]), axis=0))
    return np.maximum(_rhat(_rank_normal(s)), _rhat(_rank_normal(folded)))


def acceptance_rate(log_accept, axis=None) -> np.ndarray:
    """Mean acceptance probability min(1, exp(log_accept)) over ``axis`` (all by default)."""
    la = np.asarray(log_accept, np.float64)
    return np.exp(np.minimum(la, 0.0)).mean(axis=axis)

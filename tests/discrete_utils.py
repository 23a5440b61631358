"""Shared targets and checks of the discrete-diffusion tests: a 3-component product mixture (L = 4, V = 3,
81 sequences) and an independent-position target, enumerated; sample frequencies, a Pearson chi-square
p-value and the total variation distance against the exact probabilities."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from models.discrete import independent, random_product_mixture
from samplers.core import sample
from samplers.discrete.masked import all_masked

L, V, MASK, N = 4, 3, 3, 20000
MIX = random_product_mixture(0, 3, L, V)
IND = independent(np.random.default_rng(1).dirichlet(np.ones(V), size=L))
KEY = jax.random.PRNGKey(0)


def run_masked(sampler, target, n=N, key=KEY, trajectory=False):
    """A masked sampler from all-masked (n, L) on the target's exact masked model (one jit)."""
    return jax.jit(lambda k: sample(sampler, target.masked_model_fn(MASK), all_masked(n, L, MASK), k, trajectory))(key)


def frequencies(x, target):
    return np.bincount(np.asarray(target.index(x)), minlength=target.vocab_size**target.length) / x.shape[0]


def chi2_pvalue(x, target):
    """Pearson chi-square p-value of samples x against the enumerated target (cells pooled to E >= 5)."""
    _, p = target.enumerate()
    counts = frequencies(x, target) * x.shape[0]
    expected = p * x.shape[0]
    order = np.argsort(expected)
    small = order[np.cumsum(expected[order]) < 5.0]
    keep = np.setdiff1d(np.arange(len(p)), small)
    obs = np.append(counts[keep], counts[small].sum())
    exp = np.append(expected[keep], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp).pvalue


def tv(x, target, p=None):
    """Total variation between the frequencies of x and the target's (or the given) probabilities ``p``."""
    p = target.enumerate()[1] if p is None else p
    return 0.5 * np.abs(frequencies(x, target) - p).sum()

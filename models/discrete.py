"""Exact discrete targets: mixtures of product distributions over L positions and V tokens.

p(x) = sum_k w_k prod_l p_k[l, x_l]. Given per-position likelihoods lik[l, v] = p(x_t,l | x0_l = v)
of an observed noisy sequence x_t (any corruption that acts on each position independently), the
posterior over the component and the per-position marginals of x0 are exact at any L:

    Z_{k,l} = sum_v p_k[l, v] lik[l, v],      r_k = w_k prod_l Z_{k,l} / sum_j (...)_j,
    p(x0_l = v | x_t) = sum_k r_k p_k[l, v] lik[l, v] / Z_{k,l}                  (REFERENCES.md, "Discrete").

For masked (absorbing) diffusion lik[l, .] is all ones at a masked position and the indicator of the
observed token elsewhere, so ``masked_model_fn`` is the exact x0 predictor of MDLM / MD4 (it ignores t:
the masked posterior does not depend on the noise level). Tiny V^L targets can be enumerated.
``MarkovChain`` (``markov_chain``) is a first-order chain with the same interface, its x0 marginals
by forward-backward.
"""
from __future__ import annotations

import itertools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

MAX_ENUMERATE = 10**6


def enumerate_sequences(vocab_size: int, length: int) -> np.ndarray:
    """All V^L sequences (V^L, L) int32 in lexicographic order; ValueError beyond 1e6."""
    size = vocab_size**length
    if size > MAX_ENUMERATE:
        raise ValueError(f"enumerate needs V^L <= {MAX_ENUMERATE}, got {vocab_size}^{length} = {size}")
    return np.array(list(itertools.product(range(vocab_size), repeat=length)), np.int32)


def sequence_index(x, vocab_size: int) -> jax.Array:
    """Lexicographic index of each sequence (its row of ``enumerate_sequences``) -> (B,) int32."""
    place = vocab_size ** np.arange(np.shape(x)[-1] - 1, -1, -1)
    return jnp.asarray(x) @ jnp.asarray(place, jnp.int32)


class ProductMixture:
    """Mixture of K product distributions: ``weights`` (K,), ``probs`` (K, L, V), all positive."""

    def __init__(self, weights, probs):
        weights = np.asarray(weights, np.float64)
        probs = np.asarray(probs, np.float64)
        if probs.ndim != 3:
            raise ValueError(f"probs must have shape (K, L, V), got {probs.shape}")
        if weights.shape != probs.shape[:1]:
            raise ValueError(f"weights must have shape ({probs.shape[0]},), got {weights.shape}")
        if np.any(weights <= 0) or np.any(probs <= 0):
            raise ValueError("weights and probs must be positive")
        self.weights = weights / weights.sum()
        self.probs = probs / probs.sum(-1, keepdims=True)
        self.num_components, self.length, self.vocab_size = probs.shape

    def _log_tables(self):
        return jnp.log(jnp.asarray(self.weights)), jnp.log(jnp.asarray(self.probs))

    def check_tokens(self, x) -> None:
        """ValueError unless ``x`` is a (B, L) array of ids in 0..V-1 (concrete arrays only)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"x must have shape (B, {self.length}), got {x.shape}")
        if x.size and (x.min() < 0 or x.max() >= self.vocab_size):
            raise ValueError(f"x must hold token ids in 0..{self.vocab_size - 1}, got values in [{x.min()}, {x.max()}]")

    def log_prob(self, x) -> jax.Array:
        """Exact log p(x) of (B, L) token ids -> (B,)."""
        log_w, log_p = self._log_tables()
        pos = jnp.arange(self.length)
        per = log_p[:, pos, x]  # (K, B, L)
        return logsumexp(log_w[:, None] + per.sum(-1), axis=0)

    def sample(self, key, n: int) -> jax.Array:
        """n exact samples (n, L) int32: a component, then each position independently."""
        log_w, log_p = self._log_tables()
        k_key, x_key = jax.random.split(key)
        k = jax.random.categorical(k_key, log_w, shape=(n,))
        return jax.random.categorical(x_key, log_p[k]).astype(jnp.int32)

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        """(all V^L sequences (V^L, L) int32 in lexicographic order, their probabilities float64)."""
        xs = enumerate_sequences(self.vocab_size, self.length)
        per = self.probs[:, np.arange(self.length), xs]  # (K, N, L)
        return xs, self.weights @ per.prod(-1)

    def index(self, x) -> jax.Array:
        """Lexicographic index of each sequence (the row of ``enumerate``) -> (B,) int32."""
        return sequence_index(x, self.vocab_size)

    def posterior_x0_logits(self, log_lik) -> jax.Array:
        """Exact per-position marginal logits of x0 (B, L, V) from per-position log-likelihoods
        log p(x_t,l | x0_l = v) (B, L, V) of an observation with independent per-position noise. A
        shorter observation (B, L' < L, V) is a prefix: the exact marginals of the first L' positions."""
        log_w, log_p = self._log_tables()
        joint = log_p[:, None, : log_lik.shape[-2]] + log_lik[None]  # (K, B, L, V)
        log_z = logsumexp(joint, axis=-1, keepdims=True)  # (K, B, L, 1)
        log_r = log_w[:, None] + log_z[..., 0].sum(-1)  # (K, B)
        log_r = log_r - logsumexp(log_r, axis=0)
        return logsumexp(log_r[:, :, None, None] + joint - log_z, axis=0)

    def masked_model_fn(self, mask_id: int) -> Callable:
        """Exact x0 logits (B, L, V) of masked diffusion: model_fn(x, t), x with ``mask_id`` at masked
        positions (or a prefix of length L' <= L, as block diffusion calls it); t is ignored. ``mask_id`` must lie outside the vocabulary (>= V)."""
        return masked_model_fn(self, mask_id)


def masked_model_fn(target, mask_id: int) -> Callable:
    """model_fn(x, t) of a target with ``posterior_x0_logits``: the masked observation's per-position
    log-likelihood is 0 for every token at a masked position, else 0 for the observed token only."""
    if not isinstance(mask_id, (int, np.integer)) or mask_id < target.vocab_size:
        raise ValueError(f"mask_id must be an integer >= vocab_size={target.vocab_size} (outside the vocabulary), got {mask_id!r}")
    vocab = jnp.arange(target.vocab_size)

    def model_fn(x, t):
        del t
        seen = (x[..., None] == vocab) | (x == mask_id)[..., None]
        return target.posterior_x0_logits(jnp.where(seen, 0.0, -jnp.inf))

    return model_fn


class MarkovChain:
    """A stationary first-order Markov chain over L positions: p(x) = init[x_0] prod_l trans[x_{l-1}, x_l].
    Exact x0 marginals given per-position likelihoods by forward-backward (Rabiner 1989, Sec. III-A);
    a shorter observation is a prefix (the chain's first L' positions)."""

    def __init__(self, init, trans, length: int):
        init, trans = np.asarray(init, np.float64), np.asarray(trans, np.float64)
        v = init.shape[0]
        if init.ndim != 1 or trans.shape != (v, v) or np.any(init <= 0) or np.any(trans <= 0):
            raise ValueError(f"init must be (V,) and trans (V, V), all positive; got {init.shape}, {trans.shape}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        self.init, self.trans = init / init.sum(), trans / trans.sum(-1, keepdims=True)
        self.length, self.vocab_size = length, v

    def log_prob(self, x) -> jax.Array:
        log_init, log_trans = jnp.log(jnp.asarray(self.init)), jnp.log(jnp.asarray(self.trans))
        return log_init[x[:, 0]] + log_trans[x[:, :-1], x[:, 1:]].sum(-1)

    def enumerate(self) -> tuple[np.ndarray, np.ndarray]:
        xs = enumerate_sequences(self.vocab_size, self.length)
        return xs, self.init[xs[:, 0]] * self.trans[xs[:, :-1], xs[:, 1:]].prod(-1)

    def index(self, x) -> jax.Array:
        return sequence_index(x, self.vocab_size)

    def sample(self, key, n: int) -> jax.Array:
        """n exact samples (n, L) int32, position by position."""
        log_init, log_trans = jnp.log(jnp.asarray(self.init)), jnp.log(jnp.asarray(self.trans))
        keys = jax.random.split(key, self.length)
        x0 = jax.random.categorical(keys[0], log_init, shape=(n,))
        step = lambda prev, k: (jax.random.categorical(k, log_trans[prev]),) * 2
        _, rest = jax.lax.scan(step, x0, keys[1:])
        return jnp.concatenate([x0[:, None], rest.T], axis=1).astype(jnp.int32)

    def posterior_x0_logits(self, log_lik) -> jax.Array:
        log_init, log_trans = jnp.log(jnp.asarray(self.init)), jnp.log(jnp.asarray(self.trans))
        ll = jnp.moveaxis(log_lik, -2, 0)  # (L, B, V)

        def forward(a, l):
            a = logsumexp(a[..., :, None] + log_trans, axis=-2) + l
            return a, a

        def backward(b, l):
            b = logsumexp(log_trans + (l + b)[..., None, :], axis=-1)
            return b, b

        a0 = log_init + ll[0]
        _, fwd = jax.lax.scan(forward, a0, ll[1:])
        _, bwd = jax.lax.scan(backward, jnp.zeros_like(a0), ll[1:], reverse=True)
        alpha = jnp.concatenate([a0[None], fwd])
        beta = jnp.concatenate([bwd, jnp.zeros_like(a0)[None]])
        return jnp.moveaxis(alpha + beta, 0, -2)

    def masked_model_fn(self, mask_id: int) -> Callable:
        """Exact x0 logits of masked diffusion (t ignored), as ``ProductMixture.masked_model_fn``."""
        return masked_model_fn(self, mask_id)


def markov_chain(vocab_size: int, length: int, seed: int = 0, concentration: float = 0.5) -> MarkovChain:
    """A reproducible random Markov chain (Dirichlet initial distribution and transition rows)."""
    rng = np.random.default_rng(seed)
    init = rng.dirichlet(np.ones(vocab_size))
    trans = rng.dirichlet(np.ones(vocab_size) * concentration, size=vocab_size)
    return MarkovChain(np.maximum(init, 1e-6), np.maximum(trans, 1e-6), length)


def independent(probs) -> ProductMixture:
    """Independent positions: a one-component ProductMixture with per-position probabilities (L, V)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must have shape (L, V), got {probs.shape}")
    return ProductMixture(np.ones(1), probs[None])


def random_product_mixture(seed: int, num_components: int, length: int, vocab_size: int, concentration: float = 1.0) -> ProductMixture:
    """A reproducible random ProductMixture (Dirichlet weights and per-position probabilities)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(num_components) * 2.0)
    probs = rng.dirichlet(np.ones(vocab_size) * concentration, size=(num_components, length))
    return ProductMixture(weights, np.maximum(probs, 1e-6))

"""The masked-diffusion ELBO (train/discrete_losses.py) against its closed form on exact discrete targets.

With the exact x0 predictor the continuous-time NELBO equals -log p(x0) for every x0 and schedule
(any-order autoregressive identity): checked by Gauss-Legendre quadrature over t with all 2^L masks
enumerated, and by the Monte-Carlo loss; each check has a control (a wrong weight w(t)) that must fail.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.discrete import random_product_mixture
from models.tokens import TokenMLP
from train.discrete_losses import MaskedELBO, elbo_weight

L, V, MASK = 3, 3, 3


@pytest.fixture(scope="module")
def target():
    return random_product_mixture(seed=0, num_components=3, length=L, vocab_size=V)


def quadrature_nelbo(objective, model, x0, weight_scale=lambda t: 1.0, nodes=48):
    """int_0^1 w(t) E_mask[...] dt by Gauss-Legendre in t, all 2^L masks enumerated with q(mask | t)."""
    u, wq = np.polynomial.legendre.leggauss(nodes)
    ts, wq = 0.5 * (u + 1.0), 0.5 * wq
    masks = np.array(list(itertools.product([False, True], repeat=L)))  # (M, L)
    a = np.asarray(objective.schedule.alpha(ts))  # (N,)
    k = masks.sum(-1)
    q = (1 - a[:, None]) ** k * a[:, None] ** (L - k)  # (N, M) = q(mask | t)
    n, m, b = len(ts), len(masks), x0.shape[0]
    tb = jnp.asarray(np.repeat(ts, m * b), jnp.float32)
    mb = jnp.asarray(np.tile(np.repeat(masks, b, axis=0), (n, 1)))
    xb = jnp.tile(x0, (n * m, 1))
    vals = np.asarray(objective.terms(model, xb, tb, mb), np.float64).reshape(n, m, b)
    scale = np.array([weight_scale(t) for t in ts])
    return np.einsum("n,nm,nmb->b", wq * scale, q, vals)


def wrong_by_alpha_prime(objective):
    """Control weight: -alpha'(t) alone (the 1 / (1 - alpha) factor dropped), as a ratio to w(t)."""
    return lambda t: float(-objective.schedule.dalpha(t)) / float(elbo_weight(objective.schedule, t))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "polynomial"])
def test_exact_model_nelbo_is_minus_log_prob(target, schedule):
    obj = MaskedELBO(schedule, V, MASK)
    model = target.masked_model_fn(MASK)
    xs, p = target.enumerate()
    x0 = jnp.asarray(xs[:: max(1, len(xs) // 6)])
    exact = -np.asarray(target.log_prob(x0), np.float64)
    nelbo = quadrature_nelbo(obj, model, x0)
    np.testing.assert_allclose(nelbo, exact, rtol=1e-5)
    for scale in (lambda t: 1.1, wrong_by_alpha_prime(obj)):  # CONTROLS: a wrong w(t) is rejected
        wrong = quadrature_nelbo(obj, model, x0, scale)
        assert np.max(np.abs(wrong - exact) / exact) > 2e-2


def test_monte_carlo_loss_matches_entropy(target):
    """E_x0 E_t,mask of the loss = H(p) with the exact model; wrong weight (x1.1) is rejected."""
    obj = MaskedELBO("linear", V, MASK)
    model = target.masked_model_fn(MASK)
    _, p = target.enumerate()
    entropy = -np.sum(p * np.log(p))
    n = 40000
    kx, kt, km = jax.random.split(jax.random.PRNGKey(0), 3)
    x0 = target.sample(kx, n)
    t = obj.sample_t(kt, n)
    vals = np.asarray(obj.terms(model, x0, t, obj.sample_mask(km, t, L)), np.float64)
    se = vals.std() / np.sqrt(n)
    assert abs(vals.mean() - entropy) < 4 * se
    assert abs(1.1 * vals.mean() - entropy) > 4 * 1.1 * se  # CONTROL: a 10% wrong weight
    loss = obj.loss(model, x0, jax.random.PRNGKey(1))  # the loop's entry point, same estimator
    assert abs(float(loss) - entropy) < 6 * se


def test_few_steps_lower_the_loss(target):
    """Adam on the TokenMLP lowers the NELBO (common random numbers) from its uniform start log V per token."""
    obj = MaskedELBO("linear", V, MASK)
    net = TokenMLP(length=L, vocab_size=V, hidden=64, depth=2)
    x0 = target.sample(jax.random.PRNGKey(2), 512)
    params = net.init(jax.random.PRNGKey(4), x0, jnp.zeros(x0.shape[0]))
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    key = jax.random.PRNGKey(3)
    loss_of = lambda prm, k: obj.loss(lambda x, t: net.apply(prm, x, t), x0, k)

    @jax.jit
    def step(prm, o, k):
        g = jax.grad(loss_of)(prm, k)
        u, o = tx.update(g, o)
        return optax.apply_updates(prm, u), o

    before = float(jax.jit(loss_of)(params, key))
    np.testing.assert_allclose(before, obj.loss(lambda x, t: jnp.zeros(x.shape + (V,)), x0, key), rtol=1e-6)
    for i in range(60):
        params, opt = step(params, opt, jax.random.fold_in(key, i))
    after = float(jax.jit(loss_of)(params, key))
    _, p = target.enumerate()
    entropy = -np.sum(p * np.log(p))
    assert after < before - 0.3 * (before - entropy), (before, after, entropy)


@pytest.mark.parametrize("kwargs, field", [
    (dict(schedule="nope", vocab_size=V, mask_id=MASK), "schedule"),
    (dict(schedule="linear", vocab_size=V, mask_id=V - 1), "mask_id"),
    (dict(schedule="linear", vocab_size=1, mask_id=MASK), "vocab_size"),
    (dict(schedule="linear", vocab_size=V, mask_id=MASK, t_lo=1.0), "t_lo"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MaskedELBO(**kwargs)


@pytest.mark.parametrize("field", ["length", "hidden"])
def test_token_model_bad_values_name_the_field(field):
    kwargs = dict(length=L, vocab_size=V)
    kwargs[field] = 0
    with pytest.raises(ValueError, match=field):
        TokenMLP(**kwargs)

"""Resampling schemes: unbiased offspring counts, variance ordering, ESS; controls that fail."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.smc import resampling

W = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(8) * 0.7), jnp.float32)
N, REPS = 8, 20000


def counts(fn, weights=W, reps=REPS):
    keys = jax.random.split(jax.random.PRNGKey(1), reps)
    idx = jax.jit(jax.vmap(lambda k: fn(k, weights, N)))(keys)
    return np.asarray(jax.nn.one_hot(idx, weights.shape[0]).sum(1))  # (reps, 8) offspring counts


@pytest.mark.parametrize("name", sorted(resampling.RESAMPLERS))
def test_unbiased_offspring_counts(name):
    c = counts(resampling.RESAMPLERS[name])
    assert (c.sum(1) == N).all()
    se = c.std(0) / np.sqrt(REPS) + 1e-3
    z = np.abs(c.mean(0) - N * np.asarray(W)) / se
    assert z.max() < 4.5, (name, z)
    # control: the same check rejects a scheme resampling from 10%-distorted weights
    bad = W.at[0].multiply(1.1).at[1].multiply(0.9)
    cb = counts(resampling.RESAMPLERS[name], bad / bad.sum())
    zb = np.abs(cb.mean(0) - N * np.asarray(W)) / (cb.std(0) / np.sqrt(REPS) + 1e-3)
    assert zb.max() > 4.5, (name, zb)


def test_systematic_and_stratified_have_lower_variance_than_multinomial():
    var = {name: counts(fn).var(0).sum() for name, fn in resampling.RESAMPLERS.items()}
    assert var["systematic"] < 0.5 * var["multinomial"]
    assert var["stratified"] < 0.5 * var["multinomial"]
    assert var["residual"] < var["multinomial"]


def test_ess_and_normalise():
    log_w = jnp.log(W) + 3.0
    assert float(resampling.ess(log_w)) == pytest.approx(1.0 / float(jnp.sum(W**2)), rel=1e-5)
    assert float(resampling.ess(jnp.zeros(5))) == pytest.approx(5.0, rel=1e-6)
    np.testing.assert_allclose(np.exp(resampling.normalise(log_w)), W, rtol=1e-5)


def test_unknown_resampler_is_a_value_error():
    with pytest.raises(ValueError, match="resampler must be one of"):
        resampling.check_resampler("bogus")

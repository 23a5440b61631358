"""ESS, split R-hat, MCSE and acceptance rate: closed forms for iid and AR(1) chains,
R-hat of converged vs stuck chains, and parity with blackjax's estimators."""
import blackjax.diagnostics as bd
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.diagnostics import acceptance_rate, autocovariance, ess, mcse, split_rhat


def ar1(rho, n=5000, m=4, d=3, seed=0):
    """Stationary AR(1) chains x_s = rho x_{s-1} + e_s, shape (n, m, d)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, m, d))
    x[0] = rng.standard_normal((m, d)) / np.sqrt(1 - rho**2)
    e = rng.standard_normal((n, m, d))
    for s in range(1, n):
        x[s] = rho * x[s - 1] + e[s]
    return x


def test_ess_iid_is_n():
    x = np.random.default_rng(1).standard_normal((4000, 4, 5))
    np.testing.assert_allclose(ess(x), 16000, rtol=0.1)


@pytest.mark.parametrize("rho", [0.5, 0.9])
def test_ess_ar1_closed_form(rho):
    # ESS = N M (1 - rho) / (1 + rho) for AR(1); the estimator's relative sd is ~sqrt(2 tau / (N M)) <= 4 %.
    x = ar1(rho)
    expect = x.shape[0] * x.shape[1] * (1 - rho) / (1 + rho)
    np.testing.assert_allclose(ess(x), expect, rtol=0.15)


def test_ess_matches_blackjax():
    for rho in (0.0, 0.5, 0.9):
        x = ar1(rho, n=2000, seed=2)
        ref = np.asarray(bd.effective_sample_size(jnp.asarray(x.swapaxes(0, 1))))
        np.testing.assert_allclose(ess(x), ref, rtol=2e-3)


def test_autocovariance_direct():
    x = ar1(0.7, n=300, m=2, d=1)
    c = x - x.mean(0)
    direct = np.stack([(c[: 300 - k] * c[k:]).sum(0) / 300 for k in range(10)])
    np.testing.assert_allclose(autocovariance(x)[:10], direct, rtol=1e-10, atol=1e-12)


def test_mcse_of_iid_is_sd_over_sqrt_n():
    x = np.random.default_rng(3).standard_normal((4000, 4, 2)) * 2.0
    np.testing.assert_allclose(mcse(x), 2.0 / np.sqrt(16000), rtol=0.1)


def test_rhat_converged_and_stuck():
    x = ar1(0.5, n=2000, m=4)
    assert np.all(np.abs(split_rhat(x) - 1) < 0.01)
    assert np.all(np.abs(split_rhat(x, rank=True) - 1) < 0.01)
    stuck = x + np.array([-2.0, -2.0, 2.0, 2.0])[None, :, None]  # chains in two modes
    assert np.all(split_rhat(stuck) > 1.1) and np.all(split_rhat(stuck, rank=True) > 1.1)
    trend = x + np.linspace(0, 3, 2000)[:, None, None]  # a drift within each chain: caught by splitting
    assert np.all(split_rhat(trend) > 1.1)


def test_rhat_matches_blackjax():
    x = ar1(0.8, n=1000, seed=4) + np.array([0.0, 0.1, 0.0, -0.2])[None, :, None]
    xs = jnp.asarray(x.swapaxes(0, 1))
    np.testing.assert_allclose(split_rhat(x, rank=True), np.asarray(bd.rhat(xs)), rtol=1e-5)
    half = x.shape[0] // 2
    split = jnp.concatenate([xs[:, :half], xs[:, half:]], axis=0)
    np.testing.assert_allclose(split_rhat(x), np.asarray(bd.potential_scale_reduction(split)), rtol=1e-5)


def test_acceptance_rate():
    la = np.array([[0.0, -np.inf], [np.log(0.5), 2.0]])
    assert acceptance_rate(la) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    np.testing.assert_allclose(acceptance_rate(la, axis=0), [0.75, 0.5])


def test_shape_errors():
    with pytest.raises(ValueError, match="num_draws, num_chains"):
        ess(np.zeros(10))
    with pytest.raises(ValueError, match="at least 4 draws"):
        split_rhat(np.zeros((3, 2)))

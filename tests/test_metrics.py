"""Metrics against closed forms: Frechet distance of two Gaussians (scipy's sqrtm formula and the 1-D
formula), sliced Wasserstein and MMD of shifted Gaussians, the log-likelihood of a Gaussian."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from models.analytic import GaussianMixture, random_mixture
from models.metrics import (feature_stats, fid, frechet_distance, gmm_log_likelihood, median_bandwidth, mmd2,
                            sliced_wasserstein)


def random_spd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T / d + (0.0 if rank else 0.1 * np.eye(d))


def test_frechet_distance_equals_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2, c1, c2 = rng.standard_normal(d), rng.standard_normal(d), random_spd(rng, d), random_spd(rng, d)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2.0 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
    ours = frechet_distance(mu1, c1, mu2, c2)
    print(f"\nFrechet distance {ours:.12f}, scipy sqrtm formula {direct:.12f}")
    assert ours == pytest.approx(direct, rel=1e-10, abs=1e-10)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(ours, rel=1e-10)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [-0.5], [[0.25]]) == pytest.approx(1.5**2 + 1.5**2, rel=1e-12)
    # identical Gaussians, also rank-deficient ones (fewer samples than features)
    low = random_spd(rng, d, rank=2)
    # (a singular covariance costs ~sqrt(float64 eps) per zero eigenvalue)
    assert abs(frechet_distance(mu1, low, mu1, low)) < 1e-6 and abs(frechet_distance(mu1, c1, mu1, c1)) < 1e-9


def test_fid_of_sampled_features_approaches_the_gaussian_distance():
    rng = np.random.default_rng(1)
    d, n = 4, 40_000
    mu1, mu2, c1, c2 = np.zeros(d), 0.5 * np.ones(d), random_spd(rng, d), random_spd(rng, d)
    fa = rng.multivariate_normal(mu1, c1, n)
    fb = rng.multivariate_normal(mu2, c2, n)
    mu, cov = feature_stats(fa)
    np.testing.assert_allclose(cov, np.cov(fa.T), rtol=1e-12)
    exact, sampled = frechet_distance(mu1, c1, mu2, c2), fid(fa, fb)
    print(f"\nFID of {n} samples {sampled:.4f}, exact {exact:.4f}")
    assert sampled == pytest.approx(exact, abs=0.05)
    assert fid(fa, fa) == pytest.approx(0.0, abs=1e-9)


def replicates(metric, shift, n, dim, seed, reps=16):
    """metric(x, y, key) for `reps` independent draws of x ~ N(0, I), y ~ N(shift, I)."""
    def one(key):
        kx, ky, kp = jax.random.split(key, 3)
        x = jax.random.normal(kx, (n, dim))
        y = jax.random.normal(ky, (n, dim)) + jnp.asarray(shift)
        return metric(x, y, kp)
    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), reps)))


def assert_within_mc(values, exact, label, bias=0.0):
    mean, err = values.mean(), values.std(ddof=1) / np.sqrt(len(values))
    print(f"\n{label}: {mean:.4f} +- {err:.4f} (MC), closed form {exact:.4f}")
    assert abs(mean - exact) < 4 * err + bias


def test_sliced_wasserstein_zero_grows_and_closed_form():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (500, 3, 2, 2))  # image-shaped sets are flattened
    assert float(sliced_wasserstein(x, x, key)) == 0.0
    sw = [float(sliced_wasserstein(x, x + s, key)) for s in (0.25, 0.5, 1.0)]
    assert sw[0] < sw[1] < sw[2]
    # 1-D: W_2^2(N(0,1), N(delta,1)) = delta^2; d-D sliced: SW_2^2 = |delta|^2 / d
    sw2 = lambda x, y, k: sliced_wasserstein(x, y, k, num_projections=64) ** 2
    assert_within_mc(replicates(sw2, [1.0], 2000, 1, seed=1), 1.0, "SW_2^2 in 1-D", bias=0.01)
    assert_within_mc(replicates(sw2, [2.0, 0.0, 0.0, 0.0], 2000, 4, seed=2), 1.0, "SW_2^2 in 4-D", bias=0.01)


def test_sliced_wasserstein_unequal_sizes_is_exact_in_1d():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(7), rng.standard_normal(5) + 0.3
    ours = float(sliced_wasserstein(a[:, None], b[:, None], jax.random.PRNGKey(0), num_projections=3, p=1))
    assert ours == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-5)


def test_mmd_zero_grows_and_closed_form():
    x = jax.random.normal(jax.random.PRNGKey(0), (300, 2))
    assert abs(float(mmd2(x, x))) < 1e-6 and abs(float(mmd2(x, x, bandwidth=[0.5, 2.0]))) < 1e-6
    vals = [float(mmd2(x, x + s, bandwidth=1.0)) for s in (0.25, 0.5, 1.0)]
    assert 0 < vals[0] < vals[1] < vals[2]
    assert float(median_bandwidth(x, x + 1.0)) > 0
    # N(0, s^2 I) vs N(delta, s^2 I), bandwidth h: 2 c (1 - exp(-|delta|^2 / (2 (h^2 + 2 s^2)))),
    # c = (h^2 / (h^2 + 2 s^2))^(d/2)
    h, d, delta = 1.0, 1, 1.0
    c = (h**2 / (h**2 + 2.0)) ** (d / 2)
    exact = 2 * c * (1 - np.exp(-(delta**2) / (2 * (h**2 + 2.0))))
    unbiased = lambda x, y, k: mmd2(x, y, h, unbiased=True)
    assert_within_mc(replicates(unbiased, [delta], 1000, d, seed=3), exact, "MMD^2 1-D")


def test_gmm_log_likelihood_of_a_gaussian():
    d = 3
    gauss = GaussianMixture([1.0], np.zeros((1, d)), np.ones((1, d)))
    x = jax.random.normal(jax.random.PRNGKey(0), (20_000, d))
    ll = float(gmm_log_likelihood(gauss, x))
    exact = -0.5 * d * (np.log(2 * np.pi) + 1.0)  # -entropy of N(0, I_d)
    err = float(jnp.std(gauss.log_prob(x))) / np.sqrt(x.shape[0])
    print(f"\nmean log-likelihood {ll:.4f} +- {err:.4f}, exact {exact:.4f}")
    assert abs(ll - exact) < 4 * err
    assert float(gmm_log_likelihood(gauss, x + 1.0)) < ll - 1.0
    gmm = random_mixture(dim=2, seed=3)
    assert float(gmm_log_likelihood(gmm, gmm.sample(jax.random.PRNGKey(1), 4000))) > \
        float(gmm_log_likelihood(gmm, jax.random.normal(jax.random.PRNGKey(2), (4000, 2)) * 3.0))


def test_bad_arguments():
    with pytest.raises(ValueError, match="cov2 must have shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(jnp.zeros((4, 2)), jnp.zeros((4, 3)), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="bandwidth must be a positive"):
        mmd2(jnp.zeros((4, 2)), jnp.zeros((4, 2)), bandwidth=0.0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2\)"):
        gmm_log_likelihood(random_mixture(dim=2), jnp.zeros((4, 3)))

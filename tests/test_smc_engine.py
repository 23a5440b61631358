"""The SMC engine (samplers/smc/engine.py) on an exact discrete-time problem: the base DDPM chain of
Gaussian data (every transition affine-Gaussian, so its law at every step is a Gaussian computed
exactly by a float64 recursion of the transition's mean map), proposed from a shifted kernel and
weighted by the Gaussian density ratio, tilted by exp(lam a.x) at the end. Closed form: the tilted
Gaussian N(mu + lam S a, S) with log Z = lam a.mu + lam^2 a.S.a / 2. Z-hat unbiased in Z (the mean
of Z-hat / Z over 128 vmapped repeats within 3 SE of 1) and the weighted moments within 4 SE;
CONTROL: the same check on the weights without the density-ratio term is rejected. Then the
resampling rules (threshold 0 never: log Z is the one-shot importance-sampling estimate; 1 always;
0.5 exactly when ESS < N / 2), vmap of independent runs, model-call counts, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.sde.ancestral import ddpm
from samplers.smc import engine, resampling
from samplers.smc.engine import Potential, smc
from samplers.smc.search import kernel

SCHED = schedules.vp_linear()
GRID = time_grid(SCHED, 8, "uniform")
BASE = ddpm(SCHED, GRID, variance="large")
DATA = GaussianMixture([1.0], [[0.6, -0.4]], [[[0.5, 0.2], [0.2, 0.3]]])
MODEL = DATA.model_fn(SCHED, "eps")
LAM, DIR, SHIFT = 0.7, np.array([1.0, -0.5]), np.array([0.5, 0.25])  # tilt; proposal shift (units of scale)
REPEATS, PARTICLES = 128, 128


def base_law():
    """(mean, cov) of the base chain's x_n from x_0 ~ N(0, I): mu <- M mu + c, S <- M S M' + g^2 I with
    the transition's affine mean map M x + c read off at x = 0 and the unit vectors (float64)."""
    with jax.enable_x64(True):
        pts = jnp.concatenate([jnp.zeros((1, 2)), jnp.eye(2)]).astype(jnp.float64)
        mu, cov = np.zeros(2), np.eye(2)
        for i in range(BASE.num_steps):
            tr = kernel(BASE, pts, i, MODEL)
            c = np.asarray(tr.mean[0])
            M = (np.asarray(tr.mean[1:]) - c).T
            mu, cov = M @ mu + c, M @ cov @ M.T + float(tr.scale) ** 2 * np.eye(2)
    return mu, cov


def tilted_target():
    mu, cov = base_law()
    return mu + LAM * cov @ DIR, cov, float(LAM * DIR @ mu + 0.5 * LAM**2 * DIR @ cov @ DIR)


def shifted(ratio: bool = True) -> Potential:
    """Proposal N(mean + SHIFT scale, scale^2), weight log p / q (dropped when not ``ratio``: the CONTROL)
    and exp(lam a.x) at the last step; ``extra`` accumulates each particle's increments."""
    last = BASE.num_steps - 1

    def init(x, model_fn):
        return jnp.zeros(x.shape[:1], x.dtype), {"sum": jnp.zeros(x.shape[:1], x.dtype)}, 0

    def propose(tr, x, extra, model_fn):
        return tr.mean + tr.scale * jnp.asarray(SHIFT, x.dtype), None

    def log_weight(tr, x_old, x_new, mean, extra, model_fn, aux):
        s2 = tr.scale**2
        log_pq = -0.5 * (jnp.sum((x_new - tr.mean) ** 2, -1) - jnp.sum((x_new - mean) ** 2, -1)) / s2
        tilt = jnp.where(tr.state.i - 1 == last, LAM * x_new @ jnp.asarray(DIR, x_new.dtype), 0.0)
        incr = (log_pq if ratio else 0.0) + tilt
        return incr, {"sum": extra["sum"] + incr}

    return Potential(init=init, propose=propose, log_weight=log_weight, calls=(0, 0))


def run_repeats(sampler, model_fn, dim: int, repeats: int = REPEATS, particles: int = PARTICLES, seed: int = 0):
    """(log Z-hat (R,), weighted mean (R, d), weighted second moment (R, d, d)) of R independent runs
    (a vmap of ``sample`` over starts x ~ N(0, I) and keys)."""

    def one(x, key):
        st = sample(sampler, model_fn, x, key)
        w = jax.nn.softmax(st.log_w)
        return st.log_z, w @ st.x, jnp.einsum("n,ni,nj->ij", w, st.x, st.x)

    x = jax.random.normal(jax.random.PRNGKey(seed), (repeats, particles, dim))
    out = jax.jit(jax.vmap(one))(x, jax.random.split(jax.random.PRNGKey(seed + 1), repeats))
    return [np.asarray(a, np.float64) for a in out]


def z_unbiased(log_z, exact_log_z, max_se: float = 0.05) -> bool:
    """Mean of Z-hat / Z within 3 standard errors of 1 (unbiased in Z, not in log Z), the standard
    error itself below ``max_se`` (power: a heavy-tailed wrong estimator's huge SE fails)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(log_z - exact_log_z)
        se = ratio.std() / np.sqrt(len(ratio))
        return bool(np.isfinite(se) and se < max_se and abs(ratio.mean() - 1.0) < 3.0 * se)


def moments_match(mean, second, target_mean, target_cov) -> bool:
    """Every coordinate of the weighted mean and second moment within 4 standard errors (over repeats)."""
    exact_second = target_cov + np.outer(target_mean, target_mean)
    ok = []
    for est, exact in ((mean, target_mean), (second.reshape(len(second), -1), exact_second.reshape(-1))):
        se = est.std(0) / np.sqrt(len(est))
        ok.append(np.all(np.abs(est.mean(0) - exact) < 4.0 * se + 1e-3))
    return bool(all(ok))


def test_shifted_proposal_matches_the_exact_tilted_law():
    mean, cov, log_z = tilted_target()
    lz, m, second = run_repeats(smc(BASE, shifted()), MODEL, 2)
    assert z_unbiased(lz, log_z), np.exp(lz - log_z).mean()
    assert moments_match(m, second, mean, cov), (m.mean(0), mean)
    # CONTROL: the proposal's density ratio dropped from the weights
    lz, m, second = run_repeats(smc(BASE, shifted(ratio=False)), MODEL, 2)
    assert not z_unbiased(lz, log_z)
    assert not moments_match(m, second, mean, cov)


def _trajectory(threshold, final_resample=False, n=64):
    s = smc(BASE, shifted(), ess_threshold=threshold, final_resample=final_resample)
    x = jax.random.normal(jax.random.PRNGKey(3), (n, 2))
    return jax.jit(lambda x, k: sample(s, MODEL, x, k, trajectory=True))(x, jax.random.PRNGKey(4))


def test_resampling_rules():
    n = 64
    arange = np.arange(n)
    # threshold 0: never resamples; the weights carry over, log Z is the one-shot IS estimate
    final, traj = _trajectory(0.0)
    assert np.all(np.asarray(traj.ancestors) == arange)
    one_shot = logsumexp(final.extra["sum"]) - np.log(n)
    np.testing.assert_allclose(float(final.log_z), float(one_shot), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(final.log_w), np.asarray(resampling.normalise(final.extra["sum"])), atol=1e-5)
    # threshold 1: resamples at every step, the weights reset to 1 / N
    _, traj = _trajectory(1.0)
    np.testing.assert_allclose(np.asarray(traj.log_w), -np.log(n), rtol=1e-6)
    assert np.all(np.any(np.asarray(traj.ancestors) != arange, axis=1))
    # threshold 0.5: resampled exactly at the steps whose ESS fell below N / 2 (both kinds occur)
    _, traj = _trajectory(0.5)
    redrawn = np.all(np.isclose(np.asarray(traj.log_w), -np.log(n)), axis=1)
    np.testing.assert_array_equal(redrawn, np.asarray(traj.ess) < n / 2)
    assert 0 < redrawn.sum() < BASE.num_steps
    assert np.all(np.asarray(traj.ancestors)[~redrawn] == arange)
    # final_resample: an unweighted output even at threshold 0
    final, traj = _trajectory(0.0, final_resample=True)
    np.testing.assert_allclose(np.asarray(final.log_w), -np.log(n), rtol=1e-6)
    assert np.all(np.asarray(traj.ancestors)[:-1] == arange)


def test_reweight_resample_and_weighted_mean():
    key = jax.random.PRNGKey(0)
    log_w = resampling.normalise(jax.random.normal(key, (32,)))
    incr = jax.random.normal(jax.random.PRNGKey(1), (32,))
    idx, new, dlz, ess = engine.reweight_resample(key, log_w, incr, resampling.systematic, 0.0)
    np.testing.assert_allclose(float(dlz), float(logsumexp(log_w + incr)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new), np.asarray(log_w + incr - dlz), atol=1e-6)
    np.testing.assert_allclose(float(ess), float(resampling.ess(log_w + incr)), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(idx), np.arange(32))
    idx, new, _, _ = engine.reweight_resample(key, log_w, incr, resampling.systematic, 0.0, force=True)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(resampling.systematic(key, jnp.exp(log_w + incr - dlz), 32)))
    np.testing.assert_allclose(np.asarray(new), -np.log(32), rtol=1e-6)
    st = smc(BASE, engine.base_potential()).init(jax.random.normal(key, (32, 2)), model_fn=MODEL)
    st = st.replace(log_w=new + 0.1 * jnp.arange(32.0))
    w = np.asarray(jax.nn.softmax(st.log_w))
    np.testing.assert_allclose(np.asarray(engine.weighted_mean(st)), w @ np.asarray(st.x), rtol=1e-5)
    np.testing.assert_allclose(float(engine.weighted_mean(st, lambda x: x[:, 0] ** 2)), w @ np.asarray(st.x[:, 0]) ** 2,
                               rtol=1e-5)


def test_vmap_runs_equal_single_runs():
    s = smc(BASE, shifted())
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16, 2))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    run = jax.jit(lambda x, k: sample(s, MODEL, x, k))
    many = jax.vmap(run)(x, keys)
    for r in range(3):
        one = run(x[r], keys[r])
        np.testing.assert_allclose(np.asarray(many.x[r]), np.asarray(one.x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(float(many.log_z[r]), float(one.log_z), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(many.ancestors[r]), np.asarray(one.ancestors))


def test_model_calls():
    x, key = jnp.zeros((4, 2)), jax.random.PRNGKey(0)
    plain = smc(BASE, engine.base_potential())
    st = sample(plain, MODEL, x, key)
    assert int(st.nfe) == plain.nfe == BASE.num_steps
    np.testing.assert_allclose(np.asarray(st.log_w), -np.log(4), rtol=1e-6)
    assert abs(float(st.log_z)) < 1e-6
    # an undeclared potential calling the engine's model once more a step: counted while tracing
    extra_call = engine.base_potential()._replace(
        calls=None, log_weight=lambda tr, xo, xn, m, e, model_fn, aux: (0.0 * model_fn(xn, tr.t)[:, 0], e))
    assert int(sample(smc(BASE, extra_call), MODEL, x, key).nfe) == 2 * BASE.num_steps
    # a declared one (e.g. experts of its own): its declaration counts, in the static nfe too
    declared = engine.base_potential()._replace(calls=(0, 3))
    assert int(sample(smc(BASE, declared), MODEL, x, key).nfe) == smc(BASE, declared).nfe == 4 * BASE.num_steps


def test_bad_input():
    pot = engine.base_potential()
    with pytest.raises(ValueError, match="resampler"):
        smc(BASE, pot, resampler="bogus")
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="ess_threshold"):
            smc(BASE, pot, ess_threshold=bad)
    with pytest.raises(ValueError, match="final_resample"):
        smc(BASE, pot, final_resample="last")
    with pytest.raises(ValueError, match="sampler"):
        smc(ddim(SCHED, GRID), pot)
    with pytest.raises(ValueError, match="potential"):
        smc(BASE, (pot.init, pot.propose, pot.log_weight))
    with pytest.raises(ValueError, match="x must"):
        smc(BASE, pot).init(jnp.zeros((4,)), model_fn=MODEL)

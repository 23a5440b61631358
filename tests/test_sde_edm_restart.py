"""EDM stochastic sampler (Karras et al. 2022, Alg. 2) and restart sampling (Xu et al. 2023):
exact mixture moments in the many-step limit, reduction to Heun without churn / restarts,
exact NFE and build-time errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.rk import heun
from samplers.sde.edm_stochastic import edm_stochastic
from samplers.sde.restart import restart
from tests.test_sde_moments import GMM, assert_matches_mixture, run_from_marginal

EDM = schedules.edm()
INTERVALS = [(0.1, 0.6, 3, 4), (1.0, 3.0, 2, 5)]


def test_edm_stochastic_matches_mixture():
    """On a VP schedule: churn raises s = sigma/alpha, the model is called at t(s_hat)."""
    sch = schedules.vp_linear()
    grid = time_grid(sch, 100, "karras", final="zero")
    smp = edm_stochastic(sch, grid, s_churn=40.0, s_tmin=0.05, s_tmax=50.0)
    out = run_from_marginal(smp, sch, grid)
    assert int(out.nfe) == smp.nfe == 2 * 100 - 1
    assert_matches_mixture(out.x)


def test_restart_matches_mixture():
    grid = time_grid(EDM, 60, "karras", final="zero")
    smp = restart(EDM, grid, intervals=INTERVALS)
    out = run_from_marginal(smp, EDM, grid)
    assert int(out.nfe) == smp.nfe == (2 * 60 - 1) + 3 * 2 * 4 + 2 * 2 * 5
    assert_matches_mixture(out.x)


FN = GMM.model_fn(EDM, "x0")
_sample = jax.jit(sample, static_argnums=(0, 1))


def _run(smp, x, key=jax.random.PRNGKey(3)):
    return _sample(smp, FN, x, key)


def test_no_churn_no_restart_is_heun():
    sch = EDM
    grid = time_grid(sch, 12, "karras", final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2)) * float(np.hypot(grid.alpha[0], grid.sigma[0]))
    base = _run(heun(sch, grid, "x0"), x)
    variants = [edm_stochastic(sch, grid, "x0", s_churn=0.0), restart(sch, grid, "x0", intervals=[]),
                restart(sch, grid, "x0", intervals=[(float(grid.t[5]), float(grid.t[2]), 0, 3)])]
    for smp in variants:
        out = _run(smp, x)
        assert smp.nfe == int(out.nfe) == int(base.nfe)
        np.testing.assert_allclose(np.asarray(out.x), np.asarray(base.x), rtol=0, atol=1e-6)


def test_matches_karras_algorithm_2(x64):
    """Step by step against Alg. 2 written out on the EDM schedule (t = sigma), same z per step."""
    grid = time_grid(EDM, 6, "karras", final="zero")
    churn, tmin, tmax, snoise = 10.0, 0.5, 20.0, 1.007
    smp = edm_stochastic(EDM, grid, "x0", s_churn=churn, s_tmin=tmin, s_tmax=tmax, s_noise=snoise)
    denoise = GMM.model_fn(EDM, "x0")
    x = 80.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 2), jnp.float64)
    state, ref = smp.init(x), x
    step = jax.jit(lambda st, k: smp.step(st, k, denoise))
    for i, key in enumerate(jax.random.split(jax.random.PRNGKey(1), grid.num_steps)):
        t_cur, t_next = grid.t[i], grid.sigma[i + 1]
        gamma = min(churn / grid.num_steps, np.sqrt(2) - 1) if tmin <= t_cur <= tmax else 0.0
        t_hat = t_cur + gamma * t_cur
        x_hat = ref + np.sqrt(t_hat**2 - t_cur**2) * snoise * jax.random.normal(key, x.shape, jnp.float64)
        d = (x_hat - denoise(x_hat, t_hat)) / t_hat
        ref = x_hat + (t_next - t_hat) * d
        if t_next > 0:
            d_prime = (ref - denoise(ref, t_next)) / t_next
            ref = x_hat + (t_next - t_hat) * (0.5 * d + 0.5 * d_prime)
        state = step(state, key)
        np.testing.assert_allclose(np.asarray(state.x), np.asarray(ref), rtol=1e-10, atol=1e-10)
    assert int(state.nfe) == smp.nfe == 2 * grid.num_steps - 1


def test_churn_only_inside_tmin_tmax():
    """Steps with s_i outside [s_tmin, s_tmax] add no noise: two keys give the same result
    when no step is inside the window."""
    grid = time_grid(EDM, 10, "karras", final="zero")
    x = 80.0 * jax.random.normal(jax.random.PRNGKey(0), (16, 2))
    quiet = edm_stochastic(EDM, grid, "x0", s_churn=40.0, s_tmin=100.0, s_tmax=200.0)
    noisy = edm_stochastic(EDM, grid, "x0", s_churn=40.0)
    a, b = (_run(quiet, x, jax.random.PRNGKey(k)).x for k in (1, 2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c, d = (_run(noisy, x, jax.random.PRNGKey(k)).x for k in (1, 2))
    assert float(jnp.max(jnp.abs(c - d))) > 1e-2


def test_vmap_and_jit():
    grid = time_grid(EDM, 4, "karras", final="zero")
    smp = restart(EDM, grid, "x0", intervals=[(0.5, 2.0, 1, 1)])
    xs = 80.0 * jax.random.normal(jax.random.PRNGKey(0), (3, 4, 2))
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    one = jax.jit(lambda x, k: sample(smp, FN, x, k).x)
    batched = jax.jit(jax.vmap(one))(xs, keys)
    for j in range(3):
        np.testing.assert_allclose(np.asarray(batched[j]), np.asarray(one(xs[j], keys[j])), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(s_churn=-1.0), "s_churn"), (dict(s_noise=float("nan")), "s_noise"),
    (dict(s_tmin=2.0, s_tmax=1.0), "s_tmin"),
])
def test_edm_stochastic_errors(kwargs, match):
    grid = time_grid(EDM, 8, "karras", final="zero")
    with pytest.raises(ValueError, match=match):
        edm_stochastic(EDM, grid, **kwargs)


@pytest.mark.parametrize("intervals,match", [
    ([(0.1, 0.6, 2)], "tuple"), ([(0.1, 0.6, -1, 3)], "K"), ([(0.1, 0.6, 1, 0)], "n_steps"),
    ([(0.6, 0.1, 1, 3)], "noisier"), ([(0.1, 100.0, 1, 3)], "t_max"),
    ([(0.1, 0.6, 1, 3), (0.1, 0.8, 1, 3)], "same grid time"),
])
def test_restart_errors(intervals, match):
    grid = time_grid(EDM, 8, "karras", final="zero")
    with pytest.raises(ValueError, match=match):
        restart(EDM, grid, intervals=intervals)

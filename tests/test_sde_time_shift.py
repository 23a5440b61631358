"""Time-shifted sampling (Li et al. 2024): window 0 or a cutoff above the start is the base
DDIM/DDPM sampler exactly; the shift picks the candidate time whose sigma^2 matches var(x) and
then takes the DDIM step from there (checked against ``ode.ddim`` on a two-point grid); NFE,
jit/vmap (per-sample shifts) and errors.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.sde.ancestral import ddim_eta
from samplers.sde.time_shift import shift_candidates, time_shift
from tests.test_sde_moments import GMM

SCH = schedules.vp_discrete()
FN = GMM.model_fn(SCH, "eps")
_sample = jax.jit(sample, static_argnums=(0, 1))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_no_shift_is_base(eta):
    grid = time_grid(SCH, 20, "leading")
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    key = jax.random.PRNGKey(3)
    base = _sample(ddim_eta(SCH, grid, eta=eta), FN, x, key)
    for smp in [time_shift(SCH, grid, eta=eta, window=0, cutoff=0),
                time_shift(SCH, grid, eta=eta, window=80, cutoff=float(grid.t[0]))]:
        out = _sample(smp, FN, x, key)
        assert smp.nfe == int(out.nfe) == 20
        np.testing.assert_allclose(np.asarray(out.x), np.asarray(base.x), rtol=0, atol=1e-6)


def test_candidates_window_and_cutoff():
    grid = time_grid(SCH, 10, "leading")  # 900, 810, ..., 0 (ratio 1000 // 11 = 90), then sigma = 0
    cand = shift_candidates(SCH, grid, window=10, cutoff=300, num_train_timesteps=1000)
    assert cand.shape == (grid.num_steps, 11)
    np.testing.assert_array_equal(cand[0], grid.t[0])  # never on the first step
    for i in range(1, grid.num_steps):
        expected = grid.t[i] + np.arange(-5, 6) if grid.t[i] > 300 else np.full(11, grid.t[i])
        np.testing.assert_array_equal(cand[i], np.clip(expected, 0, 999))


def test_shift_matches_variance_and_steps_from_there(x64):
    """At step 1, x with per-sample variance sigma^2(t_1 + 3) makes the sampler call the model at
    t_1 + 3 and take the DDIM step from there to t_2."""
    grid = time_grid(SCH, 10, "leading")
    smp = time_shift(SCH, grid, eta=0.0, window=10, cutoff=0)
    tau = grid.t[1] + 3.0
    target = float(SCH.sigma(tau)) ** 2
    x = jnp.asarray(np.array([[1.0, -1.0], [2.0, -2.0], [-0.5, 0.5]]), jnp.float64)
    x = x * np.sqrt(target / np.mean(np.var(np.asarray(x), axis=1, ddof=1)))
    state = smp.init(x)
    state = state.replace(i=jnp.ones((), jnp.int32))
    out = smp.step(state, jax.random.PRNGKey(0), FN)
    pair = time_grid(SCH, timesteps=[tau, grid.t[2]])
    ref = sample(ddim(SCH, pair), FN, x)
    np.testing.assert_allclose(np.asarray(out.x), np.asarray(ref.x), rtol=1e-12, atol=1e-12)


def test_shift_changes_result_and_vmaps():
    grid = time_grid(SCH, 20, "leading")
    smp = time_shift(SCH, grid, eta=1.0, window=40, cutoff=100)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 2))
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    per_batch = jax.jit(jax.vmap(lambda x, k: sample(smp, FN, x, k)))(x, keys)
    assert np.all(np.asarray(per_batch.nfe) == smp.nfe)
    base = jax.vmap(lambda x, k: sample(ddim_eta(SCH, grid, eta=1.0), FN, x, k).x)(x, keys)
    assert float(jnp.max(jnp.abs(per_batch.x - base))) > 1e-3
    per_sample = jax.jit(jax.vmap(lambda x, k: sample(smp, FN, x[None], k).x[0]))(x[0], jax.random.split(keys[0], 8))
    assert per_sample.shape == (8, 2) and bool(jnp.all(jnp.isfinite(per_sample)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=-2), "window"), (dict(window=2.5), "window"), (dict(cutoff=float("nan")), "cutoff"),
    (dict(eta=2.0), "eta"), (dict(num_train_timesteps=1), "num_train_timesteps"),
])
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_shift(SCH, time_grid(SCH, 8, "leading"), **kwargs)

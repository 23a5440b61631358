"""Newton over the whole state (``slope="jacobian"``, samplers/parallel/picard.py) for samplers with a
history: DPM-Solver++(2M)'s model-output history is differentiated too, so the Newton update is the
second-order recurrence delta_{i+1} = A_i delta_i + C_i delta_{i-1} + r_i solved by one scan.
A sample that the whole-window trust test rejects takes Newton on a trusted prefix (``picard._trusted``)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import random_mixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.dpm_solver import dpm_solver_pp
from samplers.ode.unipc import unipc
from samplers.parallel import parallel_sample, picard, step_scale, time_parallel
from samplers.sde.ancestral import ddpm, ddpm_noise

SCH = schedules.vp_linear()
sequential = jax.jit(sample, static_argnums=(0, 1))


def rounds_and_worst(par, model, x, key, ref):
    """(rounds, worst sample's relative error) of a fresh jit of ``par`` (a new function object: a
    monkeypatched update is traced anew)."""
    out, stats = jax.jit(lambda x, k: parallel_sample(par, model, x, k))(x, key)
    return int(stats.rounds), float(jnp.max(jnp.sqrt(jnp.mean((out.x - ref) ** 2, axis=1) / jnp.mean(ref ** 2))))


def test_flat_round_trip_of_a_history_state():
    """``_flat`` puts each sample's x and its history (a stack of x-shaped arrays) in one vector, x first;
    ``_unflat`` inverts it. CONTROL: a history entry of another sample is not in this sample's vector."""
    smp = dpm_solver_pp(SCH, time_grid(SCH, 6, "logsnr"), 3)  # 3M: a history of two model outputs
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 2))  # (points, batch, event)
    state = jax.vmap(lambda a: smp.init(a))(x)
    state = state.replace(hist=jax.random.normal(jax.random.PRNGKey(1), state.hist.shape))
    z = picard._flat(state)
    assert z.shape == (3, 5, 2 * 3)
    np.testing.assert_array_equal(np.asarray(z[..., :2]), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(z[1, 4, 4:]), np.asarray(state.hist[1, 1, 4]))
    back = picard._unflat(z, state)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(z[1, 3, 4:]), np.asarray(state.hist[1, 1, 4]))  # CONTROL


@pytest.mark.parametrize("name", ["dpm3m", "unipc"])
def test_history_newton_is_exact(name):
    """The Jacobian of the whole float state (3M: x and a two-entry history, 3d x 3d blocks; UniPC: x, its
    history and the corrector's base x_prev) keeps the fixed point: at tol 1e-6 the parallel run equals
    the sequential one."""
    grid = time_grid(SCH, 24, "logsnr")
    smp = dpm_solver_pp(SCH, grid, 3) if name == "dpm3m" else unipc(SCH, grid)
    model = random_mixture(dim=8, num_components=3, seed=3).model_fn(SCH, "eps")
    x, key = jax.random.normal(jax.random.PRNGKey(0), (4, 8)), jax.random.PRNGKey(11)
    out, stats = jax.jit(parallel_sample, static_argnums=(0, 1))(
        time_parallel(smp, 8, 1e-6, step_scale(grid), slope="jacobian"), model, x, key)
    assert float(jnp.max(jnp.abs(out.x - sequential(smp, model, x, key).x))) < 1e-5
    assert int(out.nfe) == 24 and int(stats.rounds) <= 24


def test_history_newton_saves_2m_rounds(monkeypatch):
    """100 DPM-Solver++(2M) steps on the benchmark's 8-d, 4-component mixture, window 100, default tol:
    with the history differentiated (C_i = dF_i/dm_{i-1} dm_{i-1}/dx_{i-1}) <= 9 rounds (measured 8; 6
    before Newton on a trusted prefix, see the README), every sample within 1e-3 of the sequential run.
    CONTROL: the same Newton update with the block d(history)/dx of the Jacobian zeroed (C_i = 0: the
    history Jacobi, as before) needs >= 11 (measured 13)."""
    grid = time_grid(SCH, 100, "logsnr")
    smp = dpm_solver_pp(SCH, grid, 2)
    model = random_mixture(dim=8, num_components=4, seed=21).model_fn(SCH, "eps")
    x, key = jax.random.normal(jax.random.PRNGKey(7), (16, 8)), jax.random.PRNGKey(8)
    ref = sequential(smp, model, x, key).x
    par = time_parallel(smp, 100, None, step_scale(grid), slope="jacobian")

    rounds, worst = rounds_and_worst(par, model, x, key, ref)
    assert rounds <= 9 and worst < 1e-3, (rounds, worst)
    correction = picard._newton_correction
    monkeypatch.setattr(picard, "_newton_correction",
                        lambda jac, r, cut=None: correction(jac.at[..., 8:, :8].set(0.0), r, cut))
    rounds_control, worst_control = rounds_and_worst(par, model, x, key, ref)
    assert rounds_control >= 11 and worst_control < 1e-3, (rounds_control, worst_control)


def test_history_newton_float64_equals_float32(x64):
    """With jax_enable_x64 the 2M Jacobian run traces, and its float64 result equals the float32 one to
    float32 precision."""
    grid = time_grid(SCH, 24, "logsnr")
    smp = dpm_solver_pp(SCH, grid, 2)
    model = random_mixture(dim=8, num_components=3, seed=3).model_fn(SCH, "eps")
    x, key = jax.random.normal(jax.random.PRNGKey(0), (4, 8)), jax.random.PRNGKey(11)
    run = jax.jit(parallel_sample, static_argnums=(0, 1))
    par = time_parallel(smp, 8, 1e-6, step_scale(grid), slope="jacobian")
    f64, _ = run(par, model, x.astype(jnp.float64), key)
    f32, _ = run(par, model, x.astype(jnp.float32), key)
    assert f64.x.dtype == jnp.float64 and f32.x.dtype == jnp.float32
    scale = float(jnp.sqrt(jnp.mean(f64.x ** 2)))
    assert float(jnp.max(jnp.abs(f64.x - f32.x))) < 1e-5 * scale


def test_newton_on_the_trusted_prefix_saves_ddpm_rounds(monkeypatch):
    """100 DDPM steps on the benchmark's 8-d, 4-component mixture, 64 samples, window 100, default tol,
    Jacobian: a sample whose whole-window Newton correction fails the trust test takes Newton on the
    prefix where it passes and the slope after it: <= 11 rounds (measured 10), every sample within 1e-3.
    CONTROL: the whole-window test alone (such a sample takes the slope update everywhere, the rule
    before) needs >= 13 (measured 14)."""
    grid = time_grid(SCH, 100, "uniform")
    smp = ddpm(SCH, grid)
    model = random_mixture(dim=8, num_components=4, seed=21).model_fn(SCH, "eps")
    x, key = jax.random.normal(jax.random.PRNGKey(11), (64, 8)), jax.random.PRNGKey(12)
    ref = sequential(smp, model, x, key).x
    par = time_parallel(smp, 100, None, step_scale(grid, ddpm_noise(grid)), slope="jacobian")

    rounds, worst = rounds_and_worst(par, model, x, key, ref)
    assert rounds <= 11 and worst < 1e-3, (rounds, worst)
    trusted = picard._trusted
    whole_only = lambda newton, plain, d: jnp.broadcast_to(jnp.all(trusted(newton, plain, d), axis=0),
                                                           newton.shape[:2])  # all points or none
    monkeypatch.setattr(picard, "_trusted", whole_only)
    rounds_control, worst_control = rounds_and_worst(par, model, x, key, ref)
    assert rounds_control >= 13 and worst_control < 1e-3, (rounds_control, worst_control)

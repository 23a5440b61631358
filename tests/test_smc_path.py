"""Path SMC (samplers/smc/path.py) on the product of two 2-D Gaussian-mixture experts, p1 p2 / Z in
closed form (a 4-component mixture and log Z; tests/test_smc_fk.py's ``product``), the path
pi_t = p_{1,t} p_{2,t} of the experts' exact noised marginals on a VP schedule, t = 1 -> 0.
128 vmapped runs of 128 particles: mean of Z-hat / Z within 3 standard errors of 1 (SE < 0.05) and
the weighted mean and second moment within 4 SE; CONTROL: the same MALA moves without their
Metropolis correction (every proposal kept) are rejected by the same checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.mcmc import hmc, mala, ula
from samplers.mcmc.common import evaluator
from samplers.mcmc.langevin import langevin_proposal
from samplers.sde.ancestral import ddpm
from samplers.smc import path
from tests.test_smc_engine import moments_match, run_repeats, z_unbiased
from tests.test_smc_fk import E1, E2, product

SCHED = schedules.vp_linear()
MODEL = path.product_log_density(E1.log_prob_fn(SCHED), E2.log_prob_fn(SCHED))
TIMES = np.linspace(1.0, 0.0, 5)  # 4 levels; t = 0 is the experts' data densities: the target is p1 p2 exactly
TARGET, LOG_Z = product([E1, E2], [1.0, 1.0])


def unadjusted(kernel):
    """CONTROL: ``kernel`` (MALA) keeping every Langevin proposal, i.e. without its Metropolis
    correction (ULA in MALA's state): its moves no longer leave pi_t invariant."""
    evaluate = evaluator("logdensity", 0.0)

    def step(state, key, model_fn):
        z = jax.random.normal(jax.random.split(key)[0], state.x.shape, state.x.dtype)
        x = langevin_proposal(state.x, state.grad, state.step_size, z)
        ld, g = evaluate(model_fn, x)
        return state.replace(x=x, logdensity=ld, grad=g, log_accept=jnp.zeros_like(ld),
                             accept_sum=state.accept_sum + 1.0)

    return kernel._replace(step=step)


def check(sampler):
    lz, mean, second = run_repeats(sampler, MODEL, 2)
    return z_unbiased(lz, LOG_Z), moments_match(mean, second, TARGET.mean, TARGET.cov)


def test_exact_product_of_experts_and_control():
    """Measured (3 seeds): Z-hat / Z 0.975-1.025 (SE 0.009-0.010); the unadjusted control 1.18-1.25
    (SE 0.014) and its weighted mean off by 8-11 SE."""
    kernel = mala(0.5, 4)
    assert check(path.path_smc(TIMES, kernel)) == (True, True)
    assert check(path.path_smc(TIMES, unadjusted(kernel))) == (False, False)


def unadjusted_after(kernel, moves: int):
    """CONTROL: ``kernel`` (MALA) Metropolis-adjusted for its first ``moves`` moves after each
    ``init`` (a level's moves) and unadjusted after them (i.e. in path_smc's final moves only)."""
    bad = unadjusted(kernel)
    return kernel._replace(step=lambda s, k, m: jax.lax.cond(s.i < moves, lambda s: kernel.step(s, k, m),
                                                             lambda s: bad.step(s, k, m), s))


def test_final_moves_keep_the_target_and_rejuvenate():
    """8 MALA moves on p1 p2 after the last level (no reweighting): Z-hat stays unbiased, the
    weighted moments exact and the resampled duplicates are diversified. CONTROL: the same final
    moves without their Metropolis correction (the level moves still adjusted) leave Z-hat as is
    but shift the weighted moments: rejected by the moment check. Measured (3 seeds): Z-hat / Z
    0.975-0.996 (SE 0.008-0.010), moments within 1.5 SE; the control's weighted mean off by 5-13 SE,
    its second moment by 18-55 SE."""
    kernel = mala(0.5, 4)
    s = path.path_smc(TIMES, kernel, final_moves=8)
    assert s.nfe == 1 + 4 * (1 + 4) + 8
    assert check(s) == (True, True)
    assert check(path.path_smc(TIMES, unadjusted_after(kernel, 4), final_moves=8)) == (True, False)
    z = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
    one = [path.path_smc(TIMES, mala(0.5, 1), ess_threshold=1.0, final_moves=f) for f in (0, 8)]
    states = [sample(s, MODEL, z, jax.random.PRNGKey(1)) for s in one]
    assert [int(st.nfe) for st in states] == [s.nfe for s in one] == [1 + 4 * 2, 1 + 4 * 2 + 8]
    # 1 move a level (acceptance 0.47) leaves duplicates of the last resampling: measured 232 distinct of 256
    distinct = [len(np.unique(np.asarray(st.x), axis=0)) for st in states]
    assert distinct[0] < 0.95 * 256 and distinct[1] > 0.99 * 256, distinct


def test_hmc_moves_with_adapted_step_size():
    """HMC moves (3 leapfrog steps, 2 moves a level), the step size adapted towards acceptance 0.65
    (population-dependent, so unbiased only up to the adaptation). Measured (4 seeds): Z-hat / Z
    1.000-1.014 (SE 0.010-0.012)."""
    s = path.path_smc(TIMES, hmc(1.0, 3, 2), target_accept=0.65)
    assert check(s) == (True, True)
    st = sample(s, MODEL, jax.random.normal(jax.random.PRNGKey(0), (256, 2)), jax.random.PRNGKey(1))
    assert float(st.inner.step_size) < 1.0  # moved down from the too-large start
    assert 0.4 < float(st.inner.accept) < 0.9


def test_resampling_rule_and_model_calls():
    s = path.path_smc(TIMES, mala(0.3, 3), ess_threshold=0.0)
    z = jax.random.normal(jax.random.PRNGKey(0), (64, 2))
    st, trace = sample(s, MODEL, z, jax.random.PRNGKey(1), trajectory=True)
    assert np.all(np.asarray(trace.ancestors) == np.arange(64))  # threshold 0 never resamples
    assert np.ptp(np.asarray(st.log_w)) > 0.1  # the weights carried over, not reset
    assert int(st.nfe) == s.nfe == 1 + 4 * (1 + 3)  # log gamma_{t_0} at init; per level the kernel's init + 3 moves
    always = sample(path.path_smc(TIMES, mala(0.3, 3), ess_threshold=1.0), MODEL, z, jax.random.PRNGKey(1),
                    trajectory=True)[1]
    assert np.all(np.asarray(always.log_w) == np.float32(-np.log(64)))  # threshold 1 resamples at every level
    assert all(not np.all(a == np.arange(64)) for a in np.asarray(always.ancestors))
    # final_resample: the last level resamples (before its moves) even at threshold 0; Z-hat is unchanged
    last, last_trace = sample(path.path_smc(TIMES, mala(0.3, 3), ess_threshold=0.0, final_resample=True), MODEL, z,
                              jax.random.PRNGKey(1), trajectory=True)
    anc = np.asarray(last_trace.ancestors)
    assert np.all(anc[:-1] == np.arange(64)) and not np.all(anc[-1] == np.arange(64))
    assert np.all(np.asarray(last.log_w) == np.float32(-np.log(64)))
    assert float(last.log_z) == float(st.log_z)


def test_bad_input():
    kernel = mala(0.3, 2)
    grid = time_grid(SCHED, 4)
    with pytest.raises(ValueError, match="times"):
        path.path_smc([0.0, 1.0], kernel)
    with pytest.raises(ValueError, match="times"):
        path.path_smc([1.0], kernel)
    with pytest.raises(ValueError, match="kernel"):
        path.path_smc(TIMES, ula(0.3, 2))  # unadjusted: no Metropolis correction
    with pytest.raises(ValueError, match="kernel"):
        path.path_smc(TIMES, ddpm(SCHED, grid))
    with pytest.raises(ValueError, match="kernel"):
        path.path_smc(TIMES, "mala")
    with pytest.raises(ValueError, match="reference_std"):
        path.path_smc(TIMES, kernel, reference_std=0.0)
    with pytest.raises(ValueError, match="resampler"):
        path.path_smc(TIMES, kernel, resampler="bogus")
    with pytest.raises(ValueError, match="ess_threshold"):
        path.path_smc(TIMES, kernel, ess_threshold=1.5)
    with pytest.raises(ValueError, match="target_accept"):
        path.path_smc(TIMES, kernel, target_accept=1.0)
    with pytest.raises(ValueError, match="final_resample"):
        path.path_smc(TIMES, kernel, final_resample="yes")
    with pytest.raises(ValueError, match="final_moves"):
        path.path_smc(TIMES, kernel, final_moves=-1)
    with pytest.raises(ValueError, match="log_densities"):
        path.product_log_density()
    with pytest.raises(ValueError, match="z must"):
        sample(path.path_smc(TIMES, kernel), MODEL, jnp.zeros((4,)), jax.random.PRNGKey(0))
    # a kernel tied to the event shape (HMC with a diagonal mass) is accepted and checked at init
    diag = path.path_smc(TIMES, hmc(0.3, 2, 1, inverse_mass=np.array([1.0, 2.0])))
    assert np.isfinite(float(sample(diag, MODEL, jnp.ones((4, 2)), jax.random.PRNGKey(0)).log_z))

"""Inference-time search (samplers/smc/search.py): best-of-N against the closed-form E[max of N]
and the reward of SVDD, beam search and tree search rising with their budget."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.sde.ancestral import ddpm
from samplers.smc import search

SCHED = schedules.vp_linear()
# DDPM with the "large" variance is exact for N(0, 1) data under a VP schedule (x_t ~ N(0, 1) for all t)
BASE = ddpm(SCHED, time_grid(SCHED, 10, "uniform"), variance="large")
E_MAX = {2: 0.5642, 4: 1.0294, 8: 1.4236, 16: 1.7660, 32: 2.0697}  # E[max of N iid N(0, 1)]
REWARD = lambda x: x[:, 0]
# a mixture whose reward r = x prefers the small component
MIX = GaussianMixture([0.9, 0.1], [[-1.0], [2.0]], [[0.25], [0.25]])


def test_best_of_n_reproduces_expected_max():
    """Mean best-of-N reward within 4 standard errors of E[max of N]; control: the same samples
    10% too wide (best x scaled by 1.1) are rejected by the same check."""
    model = GaussianMixture([1.0], [[0.0]], [[1.0]]).model_fn(SCHED, "eps")
    reps = 3000
    run = jax.jit(lambda x, k: {n: jax.vmap(lambda xx, kk: search.best_of_n(BASE, model, REWARD, xx, kk)[1])(
        x[:, :n], k) for n in E_MAX})  # one compile: every N from the first N starts of each problem
    best = run(jax.random.normal(jax.random.PRNGKey(0), (reps, 32, 1)), jax.random.split(jax.random.PRNGKey(1), reps))
    z = lambda b, e: abs(b.mean() - e) / (b.std() / np.sqrt(reps))
    for n, e in E_MAX.items():
        b = np.asarray(best[n], np.float64)
        assert z(b, e) < 4.0, (n, b.mean(), e)
    assert max(z(1.1 * np.asarray(best[n], np.float64), e) for n, e in E_MAX.items()) > 4.0


def _rises(means, ses):
    """Each budget raises the mean reward by more than 3 standard errors of the paired difference."""
    return all(b - a > 3 * s for a, b, s in zip(means[:-1], means[1:], ses))


def _mean_rewards(run, budgets, reward):
    """Mean reward at each budget and the standard errors of the paired differences."""
    rs = [np.asarray(REWARD(x), np.float64) for x in run(budgets, MIX.model_fn(SCHED, "eps"), reward)]
    return [r.mean() for r in rs], [(b - a).std() / np.sqrt(len(a)) for a, b in zip(rs[:-1], rs[1:])]


def _svdd(budgets, model, reward):
    x = jax.random.normal(jax.random.PRNGKey(0), (256, 1))
    return [sample(search.svdd(BASE, SCHED, reward, m), model, x, jax.random.PRNGKey(1)).x for m in budgets]


def _beam(budgets, model, reward):
    x = jax.random.normal(jax.random.PRNGKey(0), (128, 2, 1))
    keys = jax.random.split(jax.random.PRNGKey(1), 128)
    run = lambda bs: jax.vmap(lambda x, k: sample(bs, model, x, k).x[0])(x, keys)  # each problem's best beam
    return [run(search.beam_search(BASE, SCHED, reward, el, block=3)) for el in budgets]


def _tree(budgets, model, reward):
    """One run of max(budgets) expansions; the output after each budget read from the trajectory."""
    ts = search.tree_search(BASE, reward, max(budgets), width=2, lam=2.0, mode="sample")
    x = jax.random.normal(jax.random.PRNGKey(0), (128, 1))
    _, xs = jax.jit(lambda x: sample(ts, model, x, jax.random.PRNGKey(1), trajectory=lambda s: s.x))(x)
    return [xs[b - 1] for b in budgets]


@pytest.mark.parametrize("run, budgets", [(_svdd, (1, 2, 8)), (_beam, (1, 2, 8)), (_tree, (1, 4, 24))],
                         ids=["svdd", "beam", "tree"])
def test_reward_rises_with_budget(run, budgets):
    means, ses = _mean_rewards(run, budgets, REWARD)
    assert _rises(means, ses), (means, ses)
    # control: the same check on a value that ignores the sample (a dropped reward) is rejected
    means, ses = _mean_rewards(run, budgets, lambda x: jnp.zeros(x.shape[0], x.dtype))
    assert not _rises(means, ses), (means, ses)


def test_svdd_beam_model_calls():
    model = MIX.model_fn(SCHED, "eps")
    st = sample(search.svdd(BASE, SCHED, REWARD, 3), model, jnp.zeros((4, 1)))
    assert int(st.nfe) == 1 + 3 * BASE.num_steps == search.svdd(BASE, SCHED, REWARD, 3).nfe
    bs = search.beam_search(BASE, SCHED, REWARD, 3, block=4)  # blocks of 4, 4, 2 steps
    st = sample(bs, model, jnp.zeros((2, 1)))
    assert bs.num_steps == 3 and int(st.i) == BASE.num_steps and int(st.nfe) == 1 + 3 * BASE.num_steps == bs.nfe


def test_bad_input():
    with pytest.raises(ValueError, match="sampler"):
        search.svdd(ddim(SCHED, time_grid(SCHED, 5)), SCHED, REWARD)  # deterministic: no transition
    with pytest.raises(ValueError, match="num_candidates"):
        search.svdd(BASE, SCHED, REWARD, 0)
    with pytest.raises(ValueError, match="alpha"):
        search.svdd(BASE, SCHED, REWARD, 4, alpha=-1.0)
    with pytest.raises(ValueError, match="reward_fn"):
        search.svdd(BASE, SCHED, None)
    with pytest.raises(ValueError, match="block"):
        search.beam_search(BASE, SCHED, REWARD, 2, block=11)
    with pytest.raises(ValueError, match="mode"):
        search.tree_search(BASE, REWARD, 4, mode="greedy")
    with pytest.raises(ValueError, match="lam"):
        search.tree_search(BASE, REWARD, 4, lam=0.0)
    with pytest.raises(ValueError, match="x must"):
        search.best_of_n(BASE, MIX.model_fn(SCHED), REWARD, jnp.zeros((3,)), jax.random.PRNGKey(0))

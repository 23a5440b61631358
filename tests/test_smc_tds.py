"""Twisted diffusion sampler (samplers/smc/tds.py) on closed-form targets: a reward-tilted Gaussian
mixture (tilt exp(lam a.x)) and the posterior of a linear measurement (inpainting) under a mixture
prior. Weighted moments within Monte Carlo error of the exact target and Z-hat unbiased in Z (mean
over 128 vmapped repeats within 3 standard errors of the exact Z); the control -- the same TDS with
the -log p~_i term of the weights dropped -- is rejected by the same checks."""
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
from samplers.smc import inverse, tds
from samplers.smc.engine import Potential, smc

SCHED = schedules.vp_linear()
BASE = ddpm(SCHED, time_grid(SCHED, 600, "uniform"), variance="large")  # discretisation bias << MC error
PRIOR = GaussianMixture([0.3, 0.5, 0.2], [[-1.5, 0.0], [1.5, 1.0], [0.0, -1.5]], [[0.6, 0.8], [0.7, 0.5], [0.6, 0.6]])
MODEL = PRIOR.model_fn(SCHED, "eps")
REPEATS, PARTICLES = 128, 128
# reward tilt exp(lam a.x)
LAM, DIR = 0.8, np.array([1.0, 0.5])
# inpainting: observe the first coordinate with noise 0.3
A, Y, NOISE = np.array([[1.0, 0.0]]), np.array([0.5]), 0.3


def tilted(prior: GaussianMixture, lam: float, a) -> tuple[GaussianMixture, float]:
    """p exp(lam a.x) / Z (REFERENCES.md): component k shifted by lam S_k a, its weight times
    exp(lam a.m_k + lam^2 a.S_k.a / 2); and log Z."""
    shift = lam * np.einsum("kij,j->ki", prior.covs, a)
    logw = np.log(prior.weights) + lam * prior.means @ a + 0.5 * lam**2 * np.einsum("i,kij,j->k", a, prior.covs, a)
    return GaussianMixture(np.exp(logw - logw.max()), prior.means + shift, prior.covs), float(np.logaddexp.reduce(logw))


def drop_old_twist(pot: Potential) -> Potential:
    """CONTROL: the same TDS whose weights omit the -log p~_i(x_i) term."""

    def log_weight(tr, x_old, x_new, mean, extra, model_fn, aux):
        incr, new = pot.log_weight(tr, x_old, x_new, mean, extra, model_fn, aux)
        return incr + extra["log_twist"], new

    return pot._replace(log_weight=log_weight)


def run(potential):
    """(log Z-hat (R,), weighted mean (R, d), weighted second moment (R, d, d)) of R independent runs."""
    s = smc(BASE, potential)

    def one(x, key):
        st = sample(s, MODEL, x, key)
        w = jax.nn.softmax(st.log_w)
        return st.log_z, w @ st.x, jnp.einsum("n,ni,nj->ij", w, st.x, st.x)

    x = jax.random.normal(jax.random.PRNGKey(0), (REPEATS, PARTICLES, 2))
    out = jax.jit(jax.vmap(one))(x, jax.random.split(jax.random.PRNGKey(1), REPEATS))
    return [np.asarray(a, np.float64) for a in out]


def z_unbiased(log_z, exact_log_z) -> bool:
    """Mean of Z-hat / Z within 3 standard errors of 1 (unbiased in Z, not in log Z), the standard
    error itself below 5% of Z (a check with power: a heavy-tailed wrong estimator's huge SE fails)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.exp(log_z - exact_log_z)
        se = ratio.std() / np.sqrt(len(ratio))
        return bool(np.isfinite(se) and se < 0.05 and abs(ratio.mean() - 1.0) < 3.0 * se)


def moments_match(mean, second, target: GaussianMixture) -> bool:
    """Every coordinate of the mean and the second moment within 4 standard errors (over repeats)."""
    exact_second = target.cov + np.outer(target.mean, target.mean)
    ok = []
    for est, exact in ((mean, target.mean), (second.reshape(len(second), -1), exact_second.reshape(-1))):
        se = est.std(0) / np.sqrt(len(est))
        ok.append(np.all(np.abs(est.mean(0) - exact) < 4.0 * se + 1e-3))
    return bool(all(ok))


CASES = {
    "reward": (lambda: tds.tds(BASE, SCHED, lambda x: LAM * x @ jnp.asarray(DIR, x.dtype)),
               lambda: tilted(PRIOR, LAM, DIR)),
    "inpainting": (lambda: tds.linear_tds(BASE, SCHED, A, Y, NOISE),
                   lambda: (inverse.mixture_posterior(PRIOR, A, Y, NOISE), inverse.mixture_evidence(PRIOR, A, Y, NOISE))),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tds_matches_the_exact_target(case):
    build, exact = CASES[case]
    target, log_z = exact()
    pot = build()
    lz, mean, second = run(pot)
    assert z_unbiased(lz, log_z), (np.exp(lz - log_z).mean(), np.exp(lz - log_z).std())
    assert moments_match(mean, second, target), (mean.mean(0), target.mean)
    # control: the dropped -log p~_i term is rejected by the same checks
    lz, mean, second = run(drop_old_twist(pot))
    assert not z_unbiased(lz, log_z)
    assert not moments_match(mean, second, target)


def test_model_calls_and_bad_input():
    short = ddpm(SCHED, time_grid(SCHED, 5, "uniform"))
    st = sample(smc(short, tds.tds(short, SCHED, lambda x: x[:, 0])), MODEL, jnp.zeros((4, 2)), jax.random.PRNGKey(0))
    assert int(st.nfe) == 1 + 2 * short.num_steps  # twist at x_0; per step the base call + one twist call
    with pytest.raises(ValueError, match="sampler"):
        tds.tds(ddim(SCHED, time_grid(SCHED, 5)), SCHED, lambda x: x[:, 0])
    with pytest.raises(ValueError, match="log_likelihood"):
        tds.tds(BASE, SCHED, None)
    with pytest.raises(ValueError, match="schedule"):
        tds.tds(BASE, "vp", lambda x: x[:, 0])
    with pytest.raises(ValueError, match="noise_std"):
        tds.linear_tds(BASE, SCHED, A, Y, 0.0)
    with pytest.raises(ValueError, match="y must"):
        tds.linear_tds(BASE, SCHED, A, np.zeros(2), NOISE)

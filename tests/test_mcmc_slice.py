"""Gibbsian polar slice sampling: moments of a correlated Gaussian and the weights of a
well-separated mixture within 4 ESS-based standard errors (tests/mcmc_utils.py), also
with truncated shrinkage budgets (which must leave the target invariant)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.mcmc.slice import gibbs_polar_slice
from tests.mcmc_utils import MU, SIGMA, check_moments, check_right_mass, gauss_logdensity, mixture, \
    mixture_logdensity, right_mass

run = jax.jit(sample, static_argnums=(0, 1, 4))


def chains(sampler, model_fn, x0, burn=100):
    final, xs = run(sampler, model_fn, x0, jax.random.PRNGKey(0), lambda s: s.x)
    assert 1 < int(final.nfe) <= sampler.nfe
    return np.asarray(xs)[burn:], int(final.nfe)


@pytest.mark.parametrize("center,max_shrink,max_step_out", [(MU, 50, 10), (None, 2, 2)],
                         ids=["centred", "origin-truncated"])
def test_gaussian_moments(center, max_shrink, max_step_out):
    smp = gibbs_polar_slice(500, width=2.0, max_shrink=max_shrink, max_step_out=max_step_out, center=center)
    xs, nfe = chains(smp, gauss_logdensity, jnp.ones((32, 3)))
    check_moments(xs, MU, SIGMA, "gpss")


def test_mixture_weights():
    gm = mixture(1.5)  # modes 6 sd apart
    x0 = jnp.tile(jnp.array([[-1.5, 0.0]]), (32, 1))
    xs, _ = chains(gibbs_polar_slice(600, width=2.0), mixture_logdensity(gm), x0)
    check_right_mass(xs, right_mass(gm), "gpss")


@pytest.mark.parametrize("build,msg", [
    (lambda: gibbs_polar_slice(0), "num_steps"),
    (lambda: gibbs_polar_slice(10, width=0.0), "width"),
    (lambda: gibbs_polar_slice(10, max_shrink=0), "max_shrink"),
    (lambda: gibbs_polar_slice(10, max_step_out=0), "max_step_out"),
    (lambda: gibbs_polar_slice(10, target="score"), "logdensity"),
    (lambda: gibbs_polar_slice(10).init(jnp.ones((4, 1)), model_fn=lambda x, t: -x[:, 0] ** 2), "dimension"),
    (lambda: gibbs_polar_slice(10, center=[0.0, 1.0]).init(jnp.ones((4, 3)), model_fn=gauss_logdensity), "center"),
])
def test_build_errors(build, msg):
    with pytest.raises(ValueError, match=msg):
        build()

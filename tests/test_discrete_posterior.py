"""Split Gibbs posterior sampling with the exact masked model of a 3-component mixture (L = 4, V = 3) and
noisy tokens (each flipped with probability 0.2): total variation to enumerated targets, each beside a
control (a 10% wrong likelihood weight, or a wrong measurement model) that the same bound rejects."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from samplers.core import sample
from samplers.discrete import posterior
from tests.discrete_utils import KEY, MASK, MIX, L, V, tv

N = 8000

Y = jnp.asarray([[0, 2, 1, 1]])
EPS = 0.2
XS, PRIOR = MIX.enumerate()
LOG_LIK = posterior.flip_log_likelihood(Y, EPS, V)


def enumerated(weight=1.0, alpha=1.0):
    """p(y | x)^weight sum_z p(z) K_alpha(x | z), normalised (alpha = 1: the posterior)."""
    kernel = np.prod(np.where(XS[:, None] == XS[None], alpha, 0.0) + (1.0 - alpha) / V, -1)
    q = np.exp(weight * np.asarray(LOG_LIK(jnp.asarray(XS)), np.float64)) * (kernel @ PRIOR)
    return q / q.sum()


def tv_to(x, q):
    return tv(x, MIX, q)


def run(num_steps, log_lik=LOG_LIK, **kwargs):
    sampler = posterior.split_gibbs(V, num_steps, log_lik, **kwargs)
    return jax.jit(lambda k: sample(sampler, MIX.masked_model_fn(MASK), jnp.broadcast_to(Y, (N, L)), k))(KEY).x


def test_flip_measurement_model():
    x = MIX.sample(KEY, N)
    y = posterior.flip_tokens(jax.random.PRNGKey(1), x, EPS, V)
    assert abs(float((y != x).mean()) - EPS) < 0.01 and ((y >= 0) & (y < V)).all()
    np.testing.assert_allclose(np.asarray(LOG_LIK(jnp.asarray([[0, 2, 1, 1], [0, 0, 0, 0]]))),
                               [4 * np.log(0.8), np.log(0.8) + 3 * np.log(0.1)], rtol=1e-6)


def test_fixed_level_chain_reaches_its_exact_target():
    """At one level (t_min = t_max) the Gibbs chain's x-marginal is p(y | x) sum_z p(z) K(x | z) exactly."""
    level = dict(t_max=0.3, t_min=0.3)  # alpha = 0.7 (linear)
    target = enumerated(alpha=0.7)
    tvs = [tv_to(run(n, **level), target) for n in (4, 32)]
    assert tvs[1] < 0.5 * tvs[0] and tvs[1] < 0.04, tvs  # Monte-Carlo floor ~0.027
    # control: a 10% wrong likelihood weight (TV 0.065 between the two targets) is rejected by the same bound
    assert tv_to(run(32, lambda x: 1.1 * LOG_LIK(x), **level), target) > 0.04


def test_annealed_chain_approaches_the_posterior():
    post = enumerated()
    tvs = [tv_to(run(n), post) for n in (4, 16)]
    assert tvs[1] < 0.5 * tvs[0] and tvs[1] < 0.1, tvs
    # control: a wrong measurement model (flip probability 0.4) is rejected by the same bound
    assert tv_to(run(16, posterior.flip_log_likelihood(Y, 0.4, V)), post) > 0.1


def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="eps"):
        posterior.flip_log_likelihood(Y, 1.5, V)
    with pytest.raises(ValueError, match="t_min"):
        posterior.split_gibbs(V, 4, LOG_LIK, t_max=0.2, t_min=0.5)
    with pytest.raises(ValueError, match="mh_steps"):
        posterior.split_gibbs(V, 4, LOG_LIK, mh_steps=0)
    with pytest.raises(ValueError, match="log_likelihood"):
        posterior.split_gibbs(V, 4, None)
    with pytest.raises(ValueError, match="coef"):
        posterior.split_gibbs(V, 4, LOG_LIK, coef=np.ones(3))
    with pytest.raises(ValueError, match="token ids"):
        posterior.split_gibbs(V, 4, LOG_LIK).init(jnp.full((2, L), MASK))

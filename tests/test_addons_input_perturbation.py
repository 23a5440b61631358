"""Input perturbation (Ning et al. 2023) as an option of the train objective: gamma = 0 is the plain
loss bit for bit; gamma > 0 feeds x_t + sigma gamma xi to the network with the unperturbed target."""
import jax
import jax.numpy as jnp
import pytest

from samplers.schedules import vp_linear
from train.losses import Objective

SCH = vp_linear()


def test_input_perturbation_loss():
    x0 = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
    key = jax.random.PRNGKey(1)
    apply = lambda x, t: 0.5 * x  # any network
    plain = Objective(SCH).loss(apply, x0, key)
    assert jnp.array_equal(Objective(SCH, input_perturbation=0.0).loss(apply, x0, key), plain)
    # gamma = 0.1 by hand: the same t and eps as the plain loss, xi from the fold-in of the noise key
    kt, ke = jax.random.split(key)
    t = Objective(SCH).sample_t(kt, 64)
    eps, xi = jax.random.normal(ke, x0.shape), jax.random.normal(jax.random.fold_in(ke, 1), x0.shape)
    a, s = SCH.alpha(t)[:, None], SCH.sigma(t)[:, None]

    def by_hand(gamma):
        return jnp.mean(jnp.square(apply(a * x0 + s * (eps + gamma * xi), t) - eps))

    got = Objective(SCH, input_perturbation=0.1).loss(apply, x0, key)
    assert abs(float(got - by_hand(0.1))) < 1e-5 * float(by_hand(0.1))
    assert not abs(float(got - by_hand(0.11))) < 1e-5 * float(by_hand(0.1))  # control: a wrong gamma


@pytest.mark.parametrize("gamma", [-0.1, float("nan"), "0.1"])
def test_bad_input_perturbation(gamma):
    with pytest.raises(ValueError):
        Objective(SCH, input_perturbation=gamma)


def test_input_perturbation_config_key():
    """``config.train.loss.input_perturbation`` reaches the built objective; a negative value is a ValueError."""
    from train.config import build_objective, validate

    cfg = validate({"train": {"loss": {"input_perturbation": 0.1}}})
    assert build_objective(cfg).input_perturbation == 0.1
    assert build_objective(validate({})).input_perturbation == 0.0  # control: the default is off
    with pytest.raises(ValueError, match="input_perturbation"):
        validate({"train": {"loss": {"input_perturbation": -0.1}}})

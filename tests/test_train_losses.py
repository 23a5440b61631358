"""Training objectives: the exact denoiser attains the closed-form minimum of every loss; EDM
preconditioning and weighting; time laws; a tiny network's loss goes down."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.analytic import GaussianMixture
from models.mlp import MLP, init_mlp
from samplers import schedules
from train.losses import Objective, edm_coefficients, edm_weight

DIM = 3
RNG = np.random.default_rng(0)
_A = RNG.standard_normal((DIM, DIM))
COV = 0.3 * _A @ _A.T + 0.2 * np.eye(DIM)
MEAN = np.array([0.5, -1.0, 0.25])
GAUSS = GaussianMixture([1.0], MEAN[None], COV[None])  # one component: the posterior is Gaussian


def eps_posterior_trace(a: float, s: float) -> float:
    """tr Cov(eps | x) for x = a x0 + s eps, x0 ~ N(m, S): tr(I - s^2 (a^2 S + s^2 I)^-1)."""
    return float(np.trace(np.eye(DIM) - s**2 * np.linalg.inv(a**2 * COV + s**2 * np.eye(DIM))))


def draws(n: int, seed: int = 1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    x0 = GAUSS.sample(k1, n, jnp.float64)
    return x0, jax.random.normal(k2, x0.shape, jnp.float64)


CASES = [  # schedule, predicts, t, target = c_x0 x0 + c_eps eps -> Cov(y|x) = (c_eps - c_x0 s / a)^2 Cov(eps|x)
    ("vp_linear", "eps", 0.3),
    ("vp_linear", "x0", 0.3),
    ("vp_linear", "v", 0.6),
    ("vp_cosine", "v", 0.2),
    ("flow", "velocity", 0.4),
    ("edm", "x0", 1.5),
]


@pytest.mark.parametrize("schedule_name,predicts,t", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_exact_denoiser_attains_closed_form_loss(x64, schedule_name, predicts, t):
    sch = schedules.get_schedule(schedule_name)
    obj = Objective(sch, predicts)
    exact = GAUSS.model_fn(sch, predicts)
    model = lambda x, tt: exact(x, t)  # the analytic model takes a scalar time
    x0, eps = draws(50_000)
    tv = jnp.full((x0.shape[0],), t, jnp.float64)
    terms = jax.jit(lambda m, x0, eps: obj.loss_terms(m, x0, eps, tv), static_argnums=0)
    per = np.asarray(terms(model, x0, eps))

    a, s = float(sch.alpha(np.float64(t))), float(sch.sigma(np.float64(t)))
    (_, _), (da, ds) = jax.jvp(lambda u: (sch.alpha(u), sch.sigma(u)), (jnp.float64(t),), (jnp.float64(1.0),))
    c_x0, c_eps = {"eps": (0.0, 1.0), "x0": (1.0, 0.0), "v": (-s, a), "velocity": (float(da), float(ds))}[predicts]
    expected = (c_eps - c_x0 * s / a) ** 2 * eps_posterior_trace(a, s) / DIM
    stderr = per.std() / np.sqrt(len(per))
    assert abs(per.mean() - expected) < 4 * stderr + 1e-12, (per.mean(), expected, stderr)

    # the exact model is the minimiser: a constant offset d adds d^2 to the loss
    shifted = np.asarray(terms(lambda x, tt: model(x, tt) + 0.1, x0, eps))
    assert abs((shifted.mean() - per.mean()) - 0.01) < 4 * stderr + 2e-3


def test_edm_preconditioning_and_weighting(x64):
    sch = schedules.edm()
    obj = Objective(sch, "x0", time_sampling="lognormal", weighting="edm", precond="edm", sigma_data=0.5)
    sigma = 1.3
    exact = GAUSS.model_fn(sch, "x0")
    c_skip, c_out, c_in, c_noise = edm_coefficients(jnp.float64(sigma), 0.5)
    assert float(c_out**2 * edm_weight(jnp.float64(sigma), 0.5)) == pytest.approx(1.0, rel=1e-12)
    assert float(c_in**2 * (sigma**2 + 0.25)) == pytest.approx(1.0, rel=1e-12)

    # the ideal raw network F = (D* - c_skip x) / c_out, fed c_in x and c_noise, preconditions back to D*
    def ideal_f(z, noise):
        x = z / c_in
        return (exact(x, sigma) - c_skip * x) / c_out + 0.0 * (noise - np.log(sigma) / 4)[:, None]

    noise_seen = obj.model_fn(lambda z, noise: jnp.broadcast_to(noise[:, None], z.shape))
    np.testing.assert_allclose(noise_seen(jnp.ones((3, DIM)), sigma), np.full((3, DIM), np.log(sigma) / 4 * c_out)
                               + c_skip, rtol=1e-12)

    x = jax.random.normal(jax.random.PRNGKey(0), (16, DIM), jnp.float64) * 2.0
    np.testing.assert_allclose(obj.model_fn(ideal_f)(x, sigma), exact(x, sigma), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(obj.model_fn(ideal_f)(x, jnp.full((16,), sigma)), exact(x, sigma), rtol=1e-10)

    # weighted loss of the ideal network = lambda(sigma) * tr Cov(x0 | x) / d
    x0, eps = draws(50_000, seed=3)
    terms = jax.jit(lambda x0, eps: obj.loss_terms(obj.model_fn(ideal_f), x0, eps, jnp.full((x0.shape[0],), sigma)))
    per = np.asarray(terms(x0, eps))
    expected = float(edm_weight(sigma, 0.5)) * sigma**2 * eps_posterior_trace(1.0, sigma) / DIM
    assert abs(per.mean() - expected) < 4 * per.std() / np.sqrt(len(per))


def test_edm_preconditioning_on_a_vp_schedule_scales_by_alpha(x64):
    """On a VP schedule the denoiser works on x / alpha at noise level sigma / alpha."""
    sch = schedules.vp_linear()
    obj = Objective(sch, "x0", precond="edm")
    t = 0.5
    a, s = float(sch.alpha(np.float64(t))), float(sch.sigma(np.float64(t)))
    raw = lambda z, noise: jnp.sin(z) + noise[:, None]
    x = jax.random.normal(jax.random.PRNGKey(1), (4, DIM), jnp.float64)
    c_skip, c_out, c_in, c_noise = (float(c) for c in edm_coefficients(jnp.float64(s / a), 0.5))
    expected = c_skip * x / a + c_out * (np.sin(c_in * x / a) + c_noise)
    np.testing.assert_allclose(obj.model_fn(raw)(x, t), expected, rtol=1e-12)


def test_time_sampling_laws(x64):
    key = jax.random.PRNGKey(5)
    sch = schedules.vp_linear()
    t = np.asarray(Objective(sch, "eps", t_lo=0.01, t_hi=0.5).sample_t(key, 50_000, jnp.float64))
    assert t.min() >= 0.01 and t.max() <= 0.5
    assert abs(t.mean() - 0.255) < 0.004 and abs(t.var() - 0.49**2 / 12) < 4e-4

    # lognormal: log(sigma / alpha) ~ N(p_mean, p_std^2), mapped through the schedule's own time
    for name in ("edm", "vp_linear"):
        s = schedules.get_schedule(name)
        t = Objective(s, "x0", time_sampling="lognormal", p_mean=-1.2, p_std=1.2).sample_t(key, 50_000, jnp.float64)
        log_ratio = np.asarray(jnp.log(s.sigma(t) / s.alpha(t)))
        assert abs(log_ratio.mean() + 1.2) < 0.025 and abs(log_ratio.std() - 1.2) < 0.03, name
    sigma = np.asarray(Objective(schedules.edm(), "x0", time_sampling="lognormal").sample_t(key, 10, jnp.float64))
    assert np.all((sigma >= 0.002) & (sigma <= 80.0))


def test_loss_decreases_when_training_a_tiny_network():
    """A small MLP fitted with Adam on a 2-D mixture: the eps loss (fixed evaluation draws) drops by half."""
    obj = Objective(schedules.vp_linear(), "eps")
    data = GaussianMixture([1.0, 1.0], [[-2.0, 0.0], [2.0, 0.0]], [[0.1, 0.1], [0.1, 0.1]])
    module = MLP(hidden=32, depth=2, embed_dim=16)
    params = init_mlp(module, jax.random.PRNGKey(0), 2)
    tx = optax.adam(1e-2)
    x_train = data.sample(jax.random.PRNGKey(98), 60 * 128).reshape(60, 128, 2)
    x_eval = data.sample(jax.random.PRNGKey(99), 2048)
    loss_at = jax.jit(lambda p, x, k: obj.loss(lambda y, t: module.apply({"params": p}, y, t), x, k))

    def step(carry, inputs):
        p, o = carry
        x, k = inputs
        g = jax.grad(loss_at)(p, x, k)
        u, o = tx.update(g, o, p)
        return (optax.apply_updates(p, u), o), None

    before = float(loss_at(params, x_eval, jax.random.PRNGKey(7)))
    train = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), (x_train, jax.random.split(jax.random.PRNGKey(1), 60)))[0][0])
    after = float(loss_at(train(params), x_eval, jax.random.PRNGKey(7)))
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("kwargs,match", [
    (dict(predicts="eps", precond="edm"), "precond='edm'"),
    (dict(predicts="eps", weighting="edm"), "weighting='edm'"),
    (dict(predicts="eps", weighting="snr"), "weighting must be one of"),
    (dict(predicts="eps", time_sampling="beta"), "time_sampling must be one of"),
    (dict(predicts="noise"), "predicts must be one of"),
    (dict(predicts="eps", t_lo=0.5, t_hi=0.2), "t_hi"),
    (dict(predicts="eps", t_hi=2.0), "t_lo/t_hi"),
])
def test_bad_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Objective(schedules.vp_linear(), **kwargs)


def test_edm_preconditioning_needs_positive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        Objective(schedules.flow(), "x0", precond="edm")

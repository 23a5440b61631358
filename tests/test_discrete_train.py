"""The masked-diffusion ELBO (train/discrete_losses.py) against its closed form on exact discrete targets.

With the exact x0 predictor the continuous-time NELBO equals -log p(x0) for every x0 and schedule
(any-order autoregressive identity): checked by Gauss-Legendre quadrature over t with all 2^L masks
enumerated, and by the Monte-Carlo loss; each check has a control (a wrong weight w(t)) that must fail.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from models.discrete import random_product_mixture
from models.tokens import TokenMLP
from train.discrete_losses import MaskedELBO, elbo_weight

L, V, MASK = 3, 3, 3


@pytest.fixture(scope="module")
def target():
    return random_product_mixture(seed=0, num_components=3, length=L, vocab_size=V)


def quadrature_nelbo(objective, model, x0, weight_scale=lambda t: 1.0, nodes=48):
    """int_0^1 w(t) E_mask[...] dt by Gauss-Legendre in t, all 2^L masks enumerated with q(mask | t)."""
    u, wq = np.polynomial.legendre.leggauss(nodes)
    ts, wq = 0.5 * (u + 1.0), 0.5 * wq
    masks = np.array(list(itertools.product([False, True], repeat=L)))  # (M, L)
    a = np.asarray(objective.schedule.alpha(ts))  # (N,)
    k = masks.sum(-1)
    q = (1 - a[:, None]) ** k * a[:, None] ** (L - k)  # (N, M) = q(mask | t)
    n, m, b = len(ts), len(masks), x0.shape[0]
    tb = jnp.asarray(np.repeat(ts, m * b), jnp.float32)
    mb = jnp.asarray(np.tile(np.repeat(masks, b, axis=0), (n, 1)))
    xb = jnp.tile(x0, (n * m, 1))
    vals = np.asarray(objective.terms(model, xb, tb, mb), np.float64).reshape(n, m, b)
    scale = np.array([weight_scale(t) for t in ts])
    return np.einsum("n,nm,nmb->b", wq * scale, q, vals)


def wrong_by_alpha_prime(objective):
    """Control weight: -alpha'(t) alone (the 1 / (1 - alpha) factor dropped), as a ratio to w(t)."""
    return lambda t: float(-objective.schedule.dalpha(t)) / float(elbo_weight(objective.schedule, t))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "polynomial"])
def test_exact_model_nelbo_is_minus_log_prob(target, schedule):
    obj = MaskedELBO(schedule, V, MASK)
    model = target.masked_model_fn(MASK)
    xs, p = target.enumerate()
    x0 = jnp.asarray(xs[:: max(1, len(xs) // 6)])
    exact = -np.asarray(target.log_prob(x0), np.float64)
    nelbo = quadrature_nelbo(obj, model, x0)
    np.testing.assert_allclose(nelbo, exact, rtol=1e-5)
    for scale in (lambda t: 1.1, wrong_by_alpha_prime(obj)):  # CONTROLS: a wrong w(t) is rejected
        wrong = quadrature_nelbo(obj, model, x0, scale)
        assert np.max(np.abs(wrong - exact) / exact) > 2e-2


def monte_carlo(target, obj, seed, terms, n=40000):
    """(mean, SE) of the loss terms(x0, t, key) over n draws x0 ~ target, t ~ obj's times, the entropy
    H(p) of the target, and the draws (x0, t, key)."""
    _, p = target.enumerate()
    kx, kt, kn = jax.random.split(jax.random.PRNGKey(seed), 3)
    x0 = target.sample(kx, n)
    t = obj.sample_t(kt, n)
    vals = np.asarray(terms(x0, t, kn), np.float64)
    return vals.mean(), vals.std() / np.sqrt(n), -np.sum(p * np.log(p)), (x0, t, kn)


def test_monte_carlo_loss_matches_entropy(target):
    """E_x0 E_t,mask of the loss = H(p) with the exact model; wrong weight (x1.1) is rejected."""
    obj = MaskedELBO("linear", V, MASK)
    model = target.masked_model_fn(MASK)
    mean, se, entropy, (x0, _, _) = monte_carlo(target, obj, 0, lambda x0, t, k: obj.terms(
        model, x0, t, obj.sample_mask(k, t, L)))
    assert abs(mean - entropy) < 4 * se
    assert abs(1.1 * mean - entropy) > 4 * 1.1 * se  # CONTROL: a 10% wrong weight
    loss = obj.loss(model, x0, jax.random.PRNGKey(1))  # the loop's entry point, same estimator
    assert abs(float(loss) - entropy) < 6 * se


def test_few_steps_lower_the_loss(target):
    """Adam on the TokenMLP lowers the NELBO (common random numbers) from its uniform start log V per token."""
    obj = MaskedELBO("linear", V, MASK)
    net = TokenMLP(length=L, vocab_size=V, hidden=64, depth=2)
    x0 = target.sample(jax.random.PRNGKey(2), 512)
    params = net.init(jax.random.PRNGKey(4), x0, jnp.zeros(x0.shape[0]))
    tx = optax.adam(3e-3)
    opt = tx.init(params)
    key = jax.random.PRNGKey(3)
    loss_of = lambda prm, k: obj.loss(lambda x, t: net.apply(prm, x, t), x0, k)

    @jax.jit
    def step(prm, o, k):
        g = jax.grad(loss_of)(prm, k)
        u, o = tx.update(g, o)
        return optax.apply_updates(prm, u), o

    before = float(jax.jit(loss_of)(params, key))
    np.testing.assert_allclose(before, obj.loss(lambda x, t: jnp.zeros(x.shape + (V,)), x0, key), rtol=1e-6)
    for i in range(60):
        params, opt = step(params, opt, jax.random.fold_in(key, i))
    after = float(jax.jit(loss_of)(params, key))
    _, p = target.enumerate()
    entropy = -np.sum(p * np.log(p))
    assert after < before - 0.3 * (before - entropy), (before, after, entropy)


@pytest.mark.parametrize("kwargs, field", [
    (dict(schedule="nope", vocab_size=V, mask_id=MASK), "schedule"),
    (dict(schedule="linear", vocab_size=V, mask_id=V - 1), "mask_id"),
    (dict(schedule="linear", vocab_size=1, mask_id=MASK), "vocab_size"),
    (dict(schedule="linear", vocab_size=V, mask_id=MASK, t_lo=1.0), "t_lo"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MaskedELBO(**kwargs)


@pytest.mark.parametrize("field", ["length", "hidden"])
def test_token_model_bad_values_name_the_field(field):
    kwargs = dict(length=L, vocab_size=V)
    kwargs[field] = 0
    with pytest.raises(ValueError, match=field):
        TokenMLP(**kwargs)


# -- the token network on the one train loop, and the digits-tokens recipe (configs/digits_tokens.py) -------------

TINY_STEPS = 6


def tiny_tokens_config(**train):
    """configs/digits_tokens.py at test size: a one-layer TokenMLP, a handful of steps, two samplers."""
    from configs import digits_tokens
    from train.config import resolve

    c = resolve(digits_tokens.get_config())
    c.seed = 1
    c.model.kwargs = dict(vocab_size=17, hidden=32, depth=1, embed_dim=4, time_dim=8)
    c.train.update(num_steps=TINY_STEPS, batch_size=32, checkpoint_every=2, log_every=1, warmup_steps=2,
                   lr=1e-2, ema_decay=0.9)
    c.train.update(train)
    c.sampler.update(name=("masked", "first_hitting"), nfe=(2,), num_samples=20, batch_size=20)
    c.eval.update(num_samples=40, swd_projections=16)
    return c


def fit_tokens(config, workdir, interrupt_at=None):
    from tests.test_train_loop import Interrupting
    from train import data as data_lib
    from train import discrete
    from train.config import build_network
    from train.loop import fit

    ds = data_lib.load("digits")
    if interrupt_at is None:
        batches = data_lib.Batches(ds, config.train.batch_size, config.seed)
    else:
        batches = Interrupting(ds, config.train.batch_size, config.seed, at=interrupt_at, exc=KeyboardInterrupt)
    net = build_network(config)
    return fit(net, discrete.build_objective(config, net), batches, config.train, str(workdir), config.seed,
               verbose=False)


def test_digits_are_exact_tokens():
    """17 levels quantise the digits exactly (pixels 0..16) and dequantise to the continuous recipe's [-1, 1];
    CONTROL: 16 levels do not."""
    from sklearn.datasets import load_digits as sk_digits

    from train import data as data_lib
    from train.discrete import from_tokens, to_tokens

    ds = data_lib.load_digits("train")
    raw = sk_digits().images[np.random.default_rng(0).permutation(1797)[data_lib.DIGITS_TEST_SIZE:]]
    tokens = np.asarray(to_tokens(ds.x, 17))
    assert tokens.shape == (1500, 64)
    np.testing.assert_array_equal(tokens, raw.reshape(1500, 64))
    np.testing.assert_array_equal(from_tokens(tokens, 17, (8, 8, 1)), ds.x)
    assert np.abs(from_tokens(to_tokens(ds.x, 16), 16, (8, 8, 1)) - ds.x).max() > 0.03  # CONTROL


def test_token_network_logits_and_carry_over():
    """A token network maps ids (B, 64) to logits (B, 64, 17); its samplers' model_fn keeps the raw logits at
    masked positions and puts all mass on the observed token elsewhere (carry-over unmasking)."""
    from train.config import build_network

    from train.discrete import carry_over

    net = build_network(tiny_tokens_config())
    params = net.init(jax.random.PRNGKey(0))
    x = jax.random.randint(jax.random.PRNGKey(1), (3, 64), 0, 18)  # 17 = the mask id
    raw = net.apply(params, x, jnp.full((3,), 0.5))
    out = carry_over(net.model_fn(params), 17, net.mask_id)(x, jnp.full((3,), 0.5))
    assert raw.shape == out.shape == (3, 64, 17)
    masked = np.asarray(x == 17)
    np.testing.assert_array_equal(np.asarray(out)[masked], np.asarray(raw)[masked])
    probs = np.asarray(jax.nn.softmax(out[~masked], axis=-1))
    np.testing.assert_array_equal(probs.argmax(-1), np.asarray(x)[~masked])
    np.testing.assert_allclose(probs.max(-1), 1.0)


@pytest.mark.parametrize("kind", ["masked_elbo", "uniform_elbo"])
def test_token_network_resume_equals_uninterrupted_run(tmp_path, kind):
    """The masked / uniform ELBO of a TokenMLP on the loop: Ctrl-C at step 3, resumed, equals the uninterrupted
    run bit for bit (parameters, EMA, optimiser state); the loss is the ELBO in nats per image."""
    from tests.test_train_loop import assert_states_equal
    from train.loop import read_metrics

    config = tiny_tokens_config()
    config.train.loss.kind = kind
    full = fit_tokens(config, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        fit_tokens(config, tmp_path / "cut", interrupt_at=3)
    assert_states_equal(fit_tokens(config, tmp_path / "cut"), full)
    first = read_metrics(str(tmp_path / "full"))[0]["loss"]
    # zero-initialised logits: the masked NELBO is about half of L log V (half the tokens masked on average);
    # the uniform one is larger (its x0 guess ignores the observed token, costly at small t)
    assert 0.3 * 64 * np.log(17) < first < (1.5 if kind == "masked_elbo" else 4.0) * 64 * np.log(17)


@pytest.mark.parametrize("kind, pairs", [
    ("masked_elbo", [("masked", 2), ("first_hitting", 64)]),
    ("uniform_elbo", [("uniform_analytic", 2)]),
])
def test_launch_train_sample_eval(tmp_path, kind, pairs):
    """launch.py's train -> sample -> eval on the tiny recipe: checkpoints, a PNG grid and .npz per sampler x NFE
    (first-hitting once at NFE 64), samples on the 17-level grid, eval.csv with the classifier and SW columns
    (eval only for the masked model: the job is the same for both)."""
    import csv
    import os

    import launch

    config = tiny_tokens_config()
    config.train.loss.kind = kind
    config.sampler.name = tuple(name for name, _ in pairs)
    assert launch.run(config, str(tmp_path))["step"] == TINY_STEPS
    config.mode = "sample"
    out = launch.run(config, str(tmp_path))
    assert sorted(out["files"]) == sorted(pairs)
    for name, nfe in pairs:
        f = np.load(tmp_path / "samples" / f"{name}_nfe{nfe}.npz")
        assert f["x"].shape == (20, 8, 8, 1) and int(f["nfe"]) == nfe
        levels = (f["x"] + 1.0) * 8.0
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-5)
        assert levels.min() >= 0 and levels.max() <= 16
        assert os.path.getsize(tmp_path / "samples" / f"{name}_nfe{nfe}.png") > 1000
    if kind != "masked_elbo":
        return
    config.mode = "eval"
    rows = launch.run(config, str(tmp_path))["rows"]
    assert [(r["solver"], r["nfe_used"]) for r in rows] == pairs
    with open(tmp_path / "eval.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(pairs)
    assert all(0.0 <= float(r["confident"]) <= 1.0 and float(r["swd"]) > 0 for r in written)
    assert os.path.exists(tmp_path / "eval_confident.png") and os.path.exists(tmp_path / "eval_swd.png")


@pytest.mark.parametrize("change, field", [
    ({"train.loss.kind": "nope"}, "train.loss.kind"),
    ({"train.loss.mask_schedule": "nope"}, "train.loss.mask_schedule"),
    ({"model.name": "mlp", "model.kwargs": {}}, "train.loss.kind"),
    ({"train.loss.kind": "denoising"}, "model.name"),
    ({"sampler.name": ("ddim",)}, "sampler.name"),
    ({"sampler.nfe": (0,)}, "sampler.nfe"),
    ({"data.name": "gmm", "eval.metrics": ("swd",)}, "data.name"),
    ({"model.kwargs": {"hidden": 8}}, "model.kwargs.vocab_size"),
    ({"model.kwargs": {"vocab_size": 17, "length": 10}}, "model.kwargs.length"),
    ({"model.kwargs": {"vocab_size": 1}}, "vocab_size"),
    ({"eval.metrics": ("confident",), "data.name": "cifar10", "mode": "sample"}, "eval.metrics"),
    ({"train.loss.kind": "uniform_elbo"}, "sampler.name"),  # masked samplers for a uniform-noise model
])
def test_bad_recipe_values_name_the_field(change, field):
    from train.config import validate

    config = tiny_tokens_config()
    for path, value in change.items():
        *sections, name = path.split(".")
        node = config
        for section in sections:
            node = node[section]
        node[name] = value
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        validate(config)


def test_discrete_registry_checks_its_arguments():
    from samplers import registry

    with pytest.raises(ValueError, match="sampler name"):
        registry.build_discrete("ddim", 17, 64, 8)
    with pytest.raises(ValueError, match="nfe"):
        registry.build_discrete("first_hitting", 17, 64, 8)
    with pytest.raises(ValueError, match="nfe"):
        registry.build_discrete("masked", 17, 64, 0)
    assert registry.build_discrete("remdm_pc", 17, 64, 8).nfe == 7  # 4 predictor + 3 corrector calls


# -- the uniform-noise objective (UniformELBO): tight on an enumerable target, as the masked ELBO --------------------

def uniform_quadrature_nelbo(objective, model, x0, weight_scale=lambda t: 1.0, nodes=64):
    """int_0^1 E_{x_t ~ q(.|x0)}[terms] dt + prior KL: Gauss-Legendre in t, all V^L noisy sequences enumerated."""
    from train.discrete_losses import uniform_probs

    u, wq = np.polynomial.legendre.leggauss(nodes)
    ts, wq = 0.5 * (u + 1.0), 0.5 * wq
    noisy = np.array(list(itertools.product(range(V), repeat=L)))  # (M, L)
    n, m, b = len(ts), len(noisy), x0.shape[0]
    xt = jnp.asarray(np.tile(np.repeat(noisy, b, axis=0), (n, 1)))  # (n m b, L): time, noisy sequence, x0
    x0b, tb = jnp.tile(x0, (n * m, 1)), jnp.asarray(np.repeat(ts, m * b), jnp.float32)
    vals = np.asarray(jax.jit(lambda a, s, y: objective.terms(model, a, s, y))(x0b, tb, xt), np.float64)
    q = np.asarray(uniform_probs(x0b, objective.schedule.alpha(tb), V), np.float64)
    qx = np.take_along_axis(q, np.asarray(xt)[..., None], axis=-1)[..., 0].prod(-1)
    scale = np.array([weight_scale(t) for t in ts])
    total = np.einsum("n,nmb->b", wq * scale, (qx * vals).reshape(n, m, b))
    return total + np.asarray(objective.prior_kl(x0), np.float64)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "polynomial"])
def test_uniform_elbo_of_the_exact_model_is_minus_log_prob(target, schedule):
    """With the exact uniform-noise denoiser the NELBO equals -log p(x0) for every x0 (alpha(1) = 0);
    CONTROLS: the rate scaled by 1.1, or sigma_t = -alpha' with the 1 / alpha factor dropped, are rejected."""
    from samplers.discrete.uniform import uniform_model_fn
    from train.discrete_losses import UniformELBO

    obj = UniformELBO(schedule, V)
    model = uniform_model_fn(target, schedule)
    xs, _ = target.enumerate()
    x0 = jnp.asarray(xs[:: max(1, len(xs) // 6)])
    exact = -np.asarray(target.log_prob(x0), np.float64)
    np.testing.assert_allclose(uniform_quadrature_nelbo(obj, model, x0), exact, rtol=1e-3)
    drop_alpha = lambda t: float(obj.schedule.alpha(np.float64(t)))
    for scale in (lambda t: 1.1, drop_alpha):
        wrong = uniform_quadrature_nelbo(obj, model, x0, scale)
        assert np.max(np.abs(wrong - exact) / exact) > 2e-2


def test_uniform_elbo_monte_carlo_and_log_ratio(target):
    """E_x0 of the Monte-Carlo loss = H(p) with the exact denoiser (CONTROL: a 10% wrong rate is rejected); the
    log-space ratio is the log of the samplers' marginal_ratio."""
    from samplers.discrete.uniform import marginal_ratio, uniform_model_fn
    from train.discrete_losses import UniformELBO, log_marginal_ratio

    obj = UniformELBO("linear", V)
    model = uniform_model_fn(target, "linear")
    loss_terms = jax.jit(lambda a, s, k: obj.terms(model, a, s, obj.sample_noisy(k, a, s)) + obj.prior_kl(a))
    mean, se, entropy, (x0, t, kn) = monte_carlo(target, obj, 5, loss_terms)
    assert abs(mean - entropy) < 4 * se
    assert abs(1.1 * mean - entropy) > 4 * 1.1 * se  # CONTROL
    xt, tt = obj.sample_noisy(kn, x0[:64], t[:64]), t[:64]
    alpha = obj.schedule.alpha(tt)
    np.testing.assert_allclose(np.exp(log_marginal_ratio(model(xt, tt), xt, alpha)),
                               marginal_ratio(model(xt, tt), xt, alpha[:, None, None]), rtol=2e-4)


@pytest.mark.parametrize("kwargs, field", [
    (dict(schedule="nope", vocab_size=V), "schedule"),
    (dict(schedule="linear", vocab_size=1), "vocab_size"),
    (dict(schedule="linear", vocab_size=V, t_lo=-0.1), "t_lo"),
])
def test_uniform_elbo_bad_values_name_the_field(kwargs, field):
    from train.discrete_losses import UniformELBO

    with pytest.raises(ValueError, match=field):
        UniformELBO(**kwargs)


def test_observed_likelihood_keeps_the_uniform_elbo_finite_at_small_t():
    """A uniform-noise model whose x0 guess ignores the observed token (zero logits) has ELBO terms ~ 1 / t (the
    bound diverges); ``observe`` adds log q(x_t,l | v) and keeps them O(1) per position; at t = 0.5 both are O(1)."""
    from train.discrete import observe
    from train.discrete_losses import UniformELBO

    v, length = 17, 64
    obj = UniformELBO("linear", v)
    zero = lambda x, t: jnp.zeros(x.shape + (v,))
    observed = observe(zero, "uniform_elbo", "linear", v, v)
    x0 = jax.random.randint(jax.random.PRNGKey(0), (16, length), 0, v)
    mean_terms = {}
    for t in (1e-4, 0.5):
        tt = jnp.full((16,), t)
        xt = obj.sample_noisy(jax.random.PRNGKey(1), x0, tt)
        mean_terms[t] = [float(obj.terms(m, x0, tt, xt).mean()) / length for m in (observed, zero)]
    assert mean_terms[1e-4][0] < 5.0 and mean_terms[0.5][0] < 5.0
    assert mean_terms[1e-4][1] > 1000 * mean_terms[1e-4][0]  # CONTROL: without the likelihood term

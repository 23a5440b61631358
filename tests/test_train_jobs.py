"""Config validation (unknown fields, bad values, up front) and the train -> sample -> eval jobs end to end,
on 2-D Gaussian-mixture data and (a smoke test) on the digits."""
import csv
import os

import numpy as np
import pytest

from configs import digits, dpm_cifar
from train import jobs
from train.config import defaults, resolve, validate

try:
    import sklearn  # noqa: F401

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_SKLEARN = False


def gmm_config(**over):
    c = resolve({
        "seed": 0,
        "model": {"name": "mlp", "kwargs": {"hidden": 64, "depth": 2, "embed_dim": 16}},
        "data": {"name": "gmm", "kwargs": {"n": 2000, "dim": 2, "num_components": 3}},
        "train": {"num_steps": 300, "batch_size": 128, "lr": 3e-3, "log_every": 50, "checkpoint_every": 150},
        "sampler": {"name": ("dpm_solver_pp_2m",), "nfe": (5, 10), "num_samples": 200, "batch_size": 500},
        "eval": {"num_samples": 500, "metrics": ("swd", "mmd2", "log_likelihood")},
    })
    for k, v in over.items():
        section, field = k.split("__")
        c[section][field] = v
    return c


@pytest.mark.slow
def test_train_sample_eval_end_to_end(tmp_path):
    config = gmm_config()
    summary = jobs.train(config, str(tmp_path))
    assert summary["step"] == 300
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["150", "300"]
    assert os.path.exists(tmp_path / "metrics.jsonl") and os.path.exists(tmp_path / "loss.png")

    out = jobs.sample(config, str(tmp_path))
    for name in ("dpm_solver_pp_2m",):
        for nfe in (5, 10):
            f = np.load(tmp_path / "samples" / f"{name}_nfe{nfe}.npz")
            assert f["x"].shape == (200, 2) and int(f["nfe"]) == nfe
            assert os.path.getsize(tmp_path / "samples" / f"{name}_nfe{nfe}.png") > 1000
    assert out["step"] == 300

    result = jobs.evaluate(config, str(tmp_path))
    with open(tmp_path / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and [int(r["nfe_used"]) for r in rows] == [5, 10]
    for m in ("swd", "mmd2", "log_likelihood"):
        assert os.path.exists(tmp_path / f"eval_{m}.png")
    # the model learned the modes: its samples' exact log-likelihood beats that of the moment-matched Gaussian
    import jax.numpy as jnp

    from models.analytic import random_mixture

    gmm = random_mixture(dim=2, num_components=3, seed=0)
    gauss = np.random.default_rng(0).multivariate_normal(gmm.mean, gmm.cov, 5000)
    baseline = float(np.mean(gmm.log_prob(jnp.asarray(gauss, jnp.float32))))
    ll = [r["log_likelihood"] for r in result["rows"]]
    assert ll[1] > ll[0] and ll[1] > baseline + 0.25, (ll, baseline)


def test_sample_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run mode=train first"):
        jobs.sample(gmm_config(), str(tmp_path))


@pytest.mark.parametrize("change,match", [
    ({"trian": {"lr": 1.0}}, "unknown config field 'trian'"),
    ({"train": {"learning_rate": 1.0}}, "unknown config field 'train.learning_rate'"),
    ({"train": {"loss": {"weights": "edm"}}}, "train.loss.weights"),
    ({"mode": "distil"}, "mode must be one of"),
    ({"sampler": {"name": ("ddim", "dpm_solver_9")}}, "sampler.name must be one of"),
    ({"sampler": {"nfe": (10, 0)}}, "sampler.nfe must be an integer >= 1"),
    ({"sampler": {"final": "end"}}, "final must be one of"),
    ({"sampler": {"name": "heun", "nfe": 1}}, "too small"),
    ({"schedule": {"name": "vp_linear", "kwargs": {"beta": 3}}}, "schedule.kwargs"),
    ({"schedule": {"name": "linear"}}, "schedule.name must be one of"),
    ({"model": {"name": "resnet"}}, "model.name must be one of"),
    ({"model": {"name": "mlp", "kwargs": {"depth": 0}}}, "depth"),
    ({"model": {"name": "mlp", "kwargs": {"widht": 3}}}, "model.kwargs"),
    ({"model": {"name": "dit", "kwargs": {"patch_size": 3}}}, "does not fit data of shape"),
    ({"predicts": "noise"}, "predicts must be one of"),
    ({"train": {"optimizer": "sgd"}}, "optimizer must be one of"),
    ({"train": {"lr": -1.0}}, "train.lr"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"train": {"ema_decay": 1.0}}, "ema_decay"),
    ({"train": {"warmup_steps": 10_000}}, r"train.warmup_steps must lie in \[0, train.num_steps=2000\], got 10000"),
    ({"train": {"num_steps": 50, "warmup_steps": 51}}, r"train.warmup_steps must lie in \[0, train.num_steps=50\]"),
    ({"train": {"loss": {"precond": "edm"}}}, "predicts must be 'x0'"),
    ({"data": {"name": "imagenet"}}, "data.name must be one of"),
    ({"data": {"name": "gmm", "random_flip": True}}, "random_flip"),
    ({"data": {"name": "gmm", "kwargs": {"size": 3}}}, "data.kwargs"),
    ({"data": {"name": "gmm", "kwargs": {"scale": -1.0}}}, r"data.kwargs.scale must lie in \(0.0, inf\]"),
    ({"data": {"name": "gmm", "kwargs": {"num_components": 0}}}, "data.kwargs.num_components must be an integer"),
    ({"eval": {"metrics": ("swd", "is")}}, "eval.metrics must be one of"),
    ({"eval": {"metrics": ("fid",)}}, "'fid' needs data.name='cifar10'"),
    ({"eval": {"metrics": ("log_likelihood",)}}, "log_likelihood"),
])
def test_validate_rejects_unknown_fields_and_bad_values(change, match):
    with pytest.raises(ValueError, match=match):
        validate(change)


def test_validate_fills_defaults_and_accepts_bare_names():
    c = validate({"schedule": "vp_cosine", "sampler": {"name": "ddim", "nfe": 7}})
    assert c.schedule.name == "vp_cosine" and c.train.num_steps == defaults().train.num_steps
    from train.config import solvers

    assert solvers(c) == [("ddim", 7)]


@pytest.mark.parametrize("name,kwargs", [
    ("mlp", {"hidden": 16, "depth": 1, "embed_dim": 8}),
    ("unet", {"channels": 8, "channel_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (4,),
              "norm_groups": 4}),
    ("dit", {"patch_size": 2, "hidden": 16, "depth": 1, "num_heads": 2}),
])
def test_networks_by_name_map_images_to_images(name, kwargs):
    import jax

    from train.config import build_network

    net = build_network(validate({"model": {"name": name, "kwargs": kwargs}}))
    params = net.param_shapes()  # traced only (compiling UNets is slow on CPU; models/ tests run them)
    x = jax.ShapeDtypeStruct((3, 8, 8, 1), jax.numpy.float32)
    t = jax.ShapeDtypeStruct((3,), jax.numpy.float32)
    key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32)
    train = jax.eval_shape(lambda p, x, t, k: net.apply(p, x, t, rng=k, train=True), params, x, t, key)
    sample = jax.eval_shape(lambda p, x: net.model_fn(p)(x, 0.5), params, x)
    assert train.shape == sample.shape == x.shape


def test_mlp_network_flattens_images_and_takes_scalar_or_batched_time():
    import jax

    from train.config import build_network

    net = build_network(validate({"model": {"name": "mlp", "kwargs": {"hidden": 16, "depth": 1, "embed_dim": 8}}}))
    params = net.init(jax.random.PRNGKey(0))
    assert params["Dense_0"]["kernel"].shape == (64 + 8, 16)  # 8x8 pixels + time features
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1))
    out = net.model_fn(params)(x, 0.5)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, net.apply(params, x, jax.numpy.full((3,), 0.5)), rtol=1e-5, atol=1e-6)


def test_cifar_recipe_validates_and_names_missing_data(tmp_path):
    c = dpm_cifar.get_config()
    c.data.dir = str(tmp_path)
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        validate(c)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    c.mode = "eval"
    c.eval.inception_weights = str(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="inception_weights.*pt_inception-2015-12-05"):
        validate(c)
    c.mode = "train"
    validate(c)  # training does not need the Inception weights
    os.remove(tmp_path / "cifar-10-python.tar.gz")
    c.mode = "sample"  # sampling needs no data
    c = validate(c)
    assert c.model.name == "ddpmpp_cifar10" and set(c.sampler.nfe) == {10, 20}
    assert "dpm_solver_pp_2m" in c.sampler.name and "fid" in c.eval.metrics


@pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed (digits data)")
def test_digits_recipe_smoke(tmp_path):
    """A few hundred steps of the digits recipe already move samples towards the real digits
    (bench/digits_quality.py measures the full recipe)."""
    import jax

    from train import distributed
    from train.config import build_network
    from train.data import load_digits
    from train.loop import keys
    from models.metrics import sliced_wasserstein

    c = digits.get_config()
    c.train.num_steps, c.train.batch_size, c.train.log_every, c.train.warmup_steps = 200, 128, 100, 50
    c.model.kwargs = dict(c.model.kwargs, hidden=128, depth=2)
    c.sampler.name, c.sampler.nfe, c.sampler.batch_size = ("dpm_solver_pp_2m",), (10,), 300
    c = validate(c)
    jobs.train(c, str(tmp_path))
    mesh = distributed.make_mesh()
    net = build_network(c)
    trained, _ = jobs.load_params(c, str(tmp_path), mesh)
    untrained = net.init(keys(c.seed)[0])
    real = load_digits("test").x
    swd = {}
    for what, params in (("trained", trained), ("untrained", untrained)):
        x, _ = jobs.generator(c, net, params, mesh)("dpm_solver_pp_2m", 10, 300)
        assert x.shape == (300, 8, 8, 1)
        swd[what] = float(sliced_wasserstein(np.clip(x, -1, 1), real, jax.random.PRNGKey(0), 128))
    assert swd["trained"] < 0.5 * swd["untrained"], swd

"""The Picard consistency model (train.distill.pcm, samplers.parallel.pcm, picard.Switch) on the exact 8-D
mixture of configs/distill_gmm_pcm.py, base sampler DDIM 50, window = 50, tol 0.1, each sample run alone: fewer
rounds than plain Picard with every sample exact, and its controls; tol = 0; launch.py on the distilled workdir;
up-front ValueErrors."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch
from configs import distill_gmm_pcm
from models.analytic import random_mixture
from samplers import registry
from samplers.core import sample
from samplers.parallel import parallel_sample, time_parallel
from samplers.parallel.pcm import linear_switch, picard_targets
from samplers.parallel.picard import Switch
from samplers.schedules import get_schedule
from train import distill, jobs
from train.config import build_network, validate
from train.distill import pcm
from train.optim import make_optimizer
from tests.distill_utils import refused_before_work

STEPS = 1000  # ~20 s on 2 shared CPU cores
TOL = 0.1  # plain Picard's default (DEFAULT_TOL["one"]); at 0.3 a one-sample PCM run ended 1.1e-3 off (plain: 9.4e-4)
ROUNDS_FRACTION = 0.96  # measured: 7.22 / 7.94 = 0.91 (seed 7), 7.30 / 7.89 = 0.93 (seed 300) mean rounds a sample
EXACT = 1e-3  # every sample's error relative to the sequential run's RMS


def _config(steps=STEPS):
    c = distill_gmm_pcm.get_config()
    c.model.kwargs.hidden = 64  # a quarter of the config's width: ~20 s of training
    c.train.num_steps, c.train.checkpoint_every, c.train.log_every = steps, steps, steps
    c.sampler.num_samples, c.eval.num_samples, c.eval.swd_projections = 64, 64, 16
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(config, network, trained params, untrained params, teacher, workdir)."""
    wd = str(tmp_path_factory.mktemp("pcm") / "run")
    jobs.train(_config(), wd)
    c = validate(_config())
    network = build_network(c)
    params, _ = jobs.load_params(c, wd)
    method = distill.method_of(c, network)
    fresh = method.init_state(network, make_optimizer(c.train)[0], jax.random.PRNGKey(0)).params
    return c, network, params, fresh, method.teacher, wd


def per_sample(trained, mode):
    """jit(params, x (B, d), tol -> (final x, rounds (B,))): every sample run alone (one-sample latency), vmapped;
    ``mode``: "pcm" (the switch of the PCM of ``params``), "plain" (plain Picard of the base), "forever" (plain
    Picard of the PCM: lambda = 1 forever). One compilation serves every ``params``."""
    c, network, _, _, teacher, _ = trained

    def one(params, xi, tol):
        par, base = pcm.parallel_of(c, network, params, teacher)
        plain = par._replace(switch=None)
        p, fn = {"pcm": (par, base), "plain": (plain, base), "forever": (plain, par.switch.model_fn)}[mode]
        out, stats = parallel_sample(p, fn, xi[None], None, tol)
        return out.x[0], stats.rounds

    return jax.jit(jax.vmap(one, in_axes=(None, 0, None)))


def _worst(out, ref):
    return float(jnp.max(jnp.sqrt(jnp.mean((out - ref) ** 2, axis=1) / jnp.mean(ref**2))))


def test_switched_pcm_saves_rounds_and_stays_exact(trained):
    """DDIM 50, window 50, tol 0.1, 64 samples each run alone: (a) the trained PCM with switching takes at most
    ROUNDS_FRACTION of plain Picard's mean rounds, every sample within EXACT; (b) control: the untrained PCM
    (the base) does not; (c) control: lambda = 1 forever (plain Picard of the PCM) ends elsewhere; (d) tol = 0
    with switching is the sequential run up to round-off."""
    c, network, params, fresh, teacher, _ = trained
    x = jax.random.normal(jax.random.PRNGKey(7), (64, 8))
    par, base = pcm.parallel_of(c, network, params, teacher)
    assert par.window == par.sampler.num_steps == 50 and par.switch.lambdas == (1.0,)
    ref = sample(par.sampler, base, x).x
    plain_x, plain_rounds = per_sample(trained, "plain")(params, x, TOL)
    switched = per_sample(trained, "pcm")
    out, rounds = switched(params, x, TOL)
    fraction = float(jnp.mean(rounds)) / float(jnp.mean(plain_rounds))
    print(f"mean rounds a sample: plain {float(jnp.mean(plain_rounds)):.2f}, pcm {float(jnp.mean(rounds)):.2f}")
    assert fraction <= ROUNDS_FRACTION, fraction
    assert _worst(out, ref) < EXACT and _worst(plain_x, ref) < EXACT
    # (b) control: the untrained PCM (zero residual: the base model) does not save the rounds
    out0, rounds0 = switched(fresh, x, TOL)
    assert float(jnp.mean(rounds0)) / float(jnp.mean(plain_rounds)) > ROUNDS_FRACTION
    assert _worst(out0, ref) < EXACT
    # (c) control for switching: lambda = 1 forever (plain Picard of the PCM) converges to another point
    out1, _ = per_sample(trained, "forever")(params, x, TOL)
    assert _worst(out1, ref) > EXACT
    # (d) tol = 0 with switching: the sequential base run up to round-off, within num_steps + 1 rounds
    out_exact, rounds_exact = switched(params, x, 0.0)
    np.testing.assert_allclose(np.asarray(out_exact), np.asarray(ref), rtol=0, atol=1e-5)
    assert int(jnp.max(rounds_exact)) <= 50 + len(par.switch.lambdas)


def test_untrained_pcm_is_the_base_bit_for_bit_and_samples_through_launch(trained):
    c, network, _, fresh, teacher, wd = trained
    par, base = pcm.parallel_of(c, network, fresh, teacher)
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 8)) * 2.0
    for t in (0.999, 0.5, 0.01):
        np.testing.assert_array_equal(np.asarray(par.switch.model_fn(x, t)), np.asarray(base(x, t)))
    sampling = _config()
    sampling.mode = "sample"  # sample / eval run the base DDIM (module doc of train.distill.pcm)
    launch.run(sampling, wd)
    with np.load(os.path.join(wd, "samples", "ddim_nfe50.npz")) as f:
        assert f["x"].shape == (64, 8) and int(f["nfe"]) == 50 and np.all(np.isfinite(f["x"]))


def test_picard_sweep_makes_one_more_point_exact_a_round():
    """picard_targets / picard_sweep (the driver's update, window = N): after k rounds from the first guess the
    points 1..k equal the sequential trajectory X* (each is stepped from exact predecessors), while the first
    iterates' end is far from it (the control); X* is a fixed point of one sweep."""
    sch = get_schedule("vp_linear")
    model = random_mixture(dim=4, num_components=3, seed=1).model_fn(sch, "eps")
    smp = registry.build("ddim", sch, 12, "eps")
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 4))
    iterates, _, x_star = jax.jit(picard_targets, static_argnums=(0, 1, 3))(smp, model, x, 14)
    for k in range(14):  # k = 13: one sweep of X^12 = X*
        gap = np.max(np.abs(np.asarray(iterates.x[k] - x_star)).reshape(13, -1), axis=1)  # per point
        assert np.all(gap[:k + 1] < 1e-5), (k, gap)
        if k <= 3:  # control: the early iterates are far from X* at the end
            assert gap[-1] > 1e-1, (k, gap)


def test_bad_switch_is_a_build_time_error():
    c = validate(_config())
    smp, scale = pcm.base_sampler(c)
    fn = lambda x, t: x
    for switch, match in [("pcm", "switch must be None or"), (Switch(1.0, (1.0,)), "switch must be None or"),
                          (Switch(fn, ()), "switch.lambdas"), (Switch(fn, (1.5,)), "switch.lambdas"),
                          (Switch(fn, [1.0]), "switch.lambdas")]:
        with pytest.raises(ValueError, match=match):
            time_parallel(smp, 50, None, scale, switch=switch)
    for rounds in (0, 1.5, True):
        with pytest.raises(ValueError, match="switch_rounds must be an integer >= 1"):
            linear_switch(fn, rounds)
    assert linear_switch(fn, 4).lambdas == (1.0, 0.75, 0.5, 0.25)


@pytest.mark.parametrize("field, value, match", [
    ("sampler", "dpm_solver_pp_2m", "distill.kwargs.sampler must be one of"),  # a history: not x alone
    ("nfe", 0, "distill.kwargs.nfe must be an integer >= 1"),
    ("rounds", 0, "distill.kwargs.rounds must be an integer >= 1"),
    ("switch_rounds", 0, "distill.kwargs.switch_rounds must be an integer >= 1"),
    ("weight", "sigma", "distill.kwargs.weight must be one of"),
    ("typo", 1, "unknown distill.kwargs"),
])
def test_bad_kwargs_are_value_errors_before_any_work(tmp_path, field, value, match):
    c = _config(10)
    c.distill.kwargs[field] = value
    refused_before_work(c, match, tmp_path)


def test_bad_config_is_a_value_error_before_any_work(tmp_path):
    c = _config(10)
    c.sampler.nfe = (20,)  # not the base sampler the PCM learns
    refused_before_work(c, "sampler.name / sampler.nfe must be the PCM's base sampler", tmp_path)
    c = validate(_config(10))
    c.model.name = "unet"  # (a network of images: reached with a workdir teacher of image data)
    with pytest.raises(ValueError, match="the PCM residual is model.name='mlp'"):
        pcm.check(c)
    c = _config(10)
    c.distill.teacher = ""
    refused_before_work(c, "distill.teacher is required", tmp_path)

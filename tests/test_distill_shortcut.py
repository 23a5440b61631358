"""Shortcut models (train.distill.shortcut, samplers.ode.shortcut): Euler with d = 1/steps, the step-size
conditioning, 1/2/4-step samples beating the exact teacher's few-step solvers, launch.py, ValueErrors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch
from configs import distill_gmm_shortcut
from samplers import registry
from samplers.core import sample
from samplers.schedules import get_schedule
from tests.distill_utils import assert_students_beat_teacher, refused_before_work
from train import distill
from train.config import build_network, validate
from train.distill.shortcut import step_condition


def test_sampler_is_euler_with_step_one_over_steps():
    flow = get_schedule("flow")
    u = lambda x, t: jnp.sin(3.0 * x) + t  # any velocity field
    x1 = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
    for steps in (1, 2, 4, 8):
        out = sample(registry.build("shortcut", flow, steps, "velocity"), u, x1)
        def euler(d):
            x, t = x1, 1.0
            for _ in range(steps):
                x, t = x - d * u(x, t), t - d
            return np.asarray(x)

        np.testing.assert_allclose(np.asarray(out.x), euler(1.0 / steps), rtol=1e-5, atol=1e-6)
        assert int(out.nfe) == steps
        # control: the same comparison rejects steps of d = 1/(steps + 1)
        assert not np.allclose(np.asarray(out.x), euler(1.0 / (steps + 1)), rtol=1e-5, atol=1e-6)
    for bad in (3, 6, 256):
        with pytest.raises(ValueError, match=r"nfe \(the number of steps\) of a shortcut model must be one of \[1, 2, 4, 8, 16, 32, 64, 128\]"):
            registry.build("shortcut", flow, bad, "velocity")
    with pytest.raises(ValueError, match="flow schedule"):
        registry.build("shortcut", get_schedule("edm"), 4, "velocity")
    with pytest.raises(ValueError, match="spacing must be 'uniform'"):
        registry.build("shortcut", flow, 4, "velocity", spacing="quadratic")


def test_student_model_fn_is_conditioned_on_d():
    c = validate(distill_gmm_shortcut.get_config())
    network = build_network(c)
    params = network.init(jax.random.PRNGKey(0))
    x, t = jnp.ones((3, 2)), jnp.float32(0.5)
    fn = distill.student_model_fn(c, network)
    for steps in (1, 4, 128):
        want = network.apply(params, x, t, cond=jnp.full((3, 1), np.log2(steps) / 7))
        np.testing.assert_allclose(np.asarray(fn(params, "shortcut", steps)(x, t)), np.asarray(want), rtol=1e-6)
    assert float(step_condition(jnp.float32(1.0))) == 0.0 and float(step_condition(jnp.float32(1 / 128))) == 1.0
    assert not np.allclose(np.asarray(fn(params, "shortcut", 1)(x, t)), np.asarray(fn(params, "shortcut", 2)(x, t)))
    with pytest.raises(ValueError, match="the number of steps"):
        fn(params, "shortcut", 5)


def test_shortcut_students_beat_the_teachers_solvers_at_equal_nfe(tmp_path):
    """6000 steps; an undertrained student (60 steps) fails the same check."""
    assert_students_beat_teacher(distill_gmm_shortcut.get_config, "shortcut", tmp_path)


def test_trained_from_scratch_through_launch_and_bad_step_counts(tmp_path):
    c = distill_gmm_shortcut.get_config()
    c.mode, c.distill.teacher = "train", ""  # from data alone, mode=train
    c.model.kwargs.hidden, c.model.kwargs.depth = 16, 1
    c.train.num_steps, c.train.batch_size, c.train.log_every, c.train.checkpoint_every = 10, 32, 5, 10
    c.sampler.num_samples, c.eval.num_samples, c.eval.swd_projections = 64, 64, 16
    launch.run(c, str(tmp_path))
    c.mode, c.sampler.nfe = "eval", (1, 2, 128)
    rows = launch.run(c, str(tmp_path))["rows"]
    assert [r["nfe_used"] for r in rows] == [1, 2, 128]
    assert all(np.isfinite(r["swd"]) for r in rows)
    c.sampler.nfe = (4, 3)
    refused_before_work(c, "the number of steps", tmp_path)
    c.model.kwargs.cond_dim = 0
    c.sampler.nfe = (4,)
    refused_before_work(c, "cond_dim=1", tmp_path)

"""SFD / SFD-v (train.distill.sfd, samplers.ode.sfd): the Euler sampler with the analytical first step,
1/2/4-call students of the exact mixture beating the teacher's own few-step solvers, exact resume,
launch.py on a distilled workdir, and up-front ValueErrors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch
from configs import distill_gmm_sfd
from samplers import registry
from samplers.core import sample
from samplers.schedules import get_schedule
from tests.distill_utils import assert_students_beat_teacher, refused_before_work, restored_state
from train import distill, jobs
from train.config import build_network, validate
from train.optim import make_optimizer


def test_sampler_is_euler_after_an_analytical_first_step():
    """EDM: x_1 = x_T + (t_1 - t_0) x_T / sqrt(1 + t_0^2), then x += (t' - t)(x - D(x, t)) / t; nfe calls."""
    sch = get_schedule("edm")
    d = lambda x, t: jnp.tanh(x) * 0.5 + 0.1 * t  # any denoiser (x0 prediction)
    x_t = jax.random.normal(jax.random.PRNGKey(0), (5, 2)) * 80.0
    for nfe in (1, 2, 4):
        out = sample(registry.build("sfd", sch, nfe, "x0"), d, x_t)
        t = registry.grid("sfd", sch, nfe).t
        assert len(t) == nfe + 2 and t[0] == 80.0 and abs(t[-1] - 0.002) < 1e-12

        def euler(afs=True):
            x = np.asarray(x_t, np.float64)
            for i in range(nfe + 1):
                slope = x / np.sqrt(1 + t[i] ** 2) if (afs and i == 0) else (x - np.asarray(d(x, t[i]))) / t[i]
                x = x + (t[i + 1] - t[i]) * slope
            return x

        np.testing.assert_allclose(np.asarray(out.x), euler(), rtol=2e-4, atol=1e-5)
        assert int(out.nfe) == nfe
        # control: the same comparison rejects a model call in place of the analytical step
        assert not np.allclose(np.asarray(out.x), euler(afs=False), rtol=2e-4, atol=1e-5)
    with pytest.raises(ValueError, match="needs a grid of >= 2 steps"):
        registry.SAMPLERS["sfd"].builder(sch, registry.grid("euler", sch, 1), "x0")
    with pytest.raises(ValueError, match="analytical first step needs alpha > 0"):
        registry.build("sfd", get_schedule("flow"), 2, "velocity", spacing="uniform")


# -- SFD-v of the exact mixture against the teacher's solvers ------------------------------------------

def test_sfdv_students_beat_the_teachers_solvers_at_equal_nfe(tmp_path):
    """One SFD-v network for 1, 2 and 4 calls (3000 steps, ~20 s): SW < 0.5x and log-lik gap < 0.75x the
    best of DDIM / DPM-Solver++(2M) at the same NFE; an undertrained student (60 steps) fails the same check."""
    assert_students_beat_teacher(distill_gmm_sfd.get_config, "sfd", tmp_path)


# -- resume, launch, errors -------------------------------------------------------------------------

def _tiny(steps, nfe=(1, 2)):
    c = distill_gmm_sfd.get_config()
    c.model.kwargs = dict(hidden=16, depth=1, embed_dim=8, fourier_scale=1.0, cond_dim=1 if len(nfe) > 1 else 0)
    c.distill.kwargs = dict(nfe=nfe if len(nfe) > 1 else nfe[0], extra_points=1, solver="heun")
    c.train.batch_size, c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 32, steps, 5, 10
    c.train.lr_schedule = "constant"
    c.sampler.nfe = nfe
    c.sampler.num_samples, c.eval.num_samples, c.eval.swd_projections = 64, 64, 16
    return c


def test_student_of_a_teacher_workdir_copy_resume_and_launch(tmp_path):
    """A trained teacher: the student's step-0 parameters are the teacher's (the copy SFD fine-tunes);
    resumed == uninterrupted; sample / eval of the distilled workdir through launch.py."""
    t = _tiny(10, (2,))
    t.mode, t.distill.method, t.distill.teacher, t.distill.kwargs = "train", "", "", {}
    launch.run(t, str(tmp_path / "teacher"))

    def tiny(steps):
        c = _tiny(steps, (2,))
        c.distill.teacher = str(tmp_path / "teacher")
        return c

    jobs.train(tiny(20), str(tmp_path / "once"))
    jobs.train(tiny(10), str(tmp_path / "twice"))
    jobs.train(tiny(20), str(tmp_path / "twice"))  # resumes at step 10
    a, b = restored_state(tiny(20), str(tmp_path / "once")), restored_state(tiny(20), str(tmp_path / "twice"))
    assert int(a.step) == int(b.step) == 20
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    c = validate(tiny(20))
    network = build_network(c)
    method = distill.method_of(c, network)
    state = method.init_state(network, make_optimizer(c.train)[0], jax.random.PRNGKey(9))
    for x, y in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(method.teacher.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    c.mode = "sample"
    launch.run(c, str(tmp_path / "once"))
    with np.load(tmp_path / "once" / "samples" / "sfd_nfe2.npz") as f:
        assert f["x"].shape == (64, 2) and int(f["nfe"]) == 2 and np.all(np.isfinite(f["x"]))
    c.mode = "eval"
    rows = launch.run(c, str(tmp_path / "once"))["rows"]
    assert [(r["solver"], r["nfe_used"]) for r in rows] == [("sfd", 2)] and np.isfinite(rows[0]["swd"])
    c.mode, c.model.kwargs.hidden = "distill", 32  # control: not the teacher's network, nothing to copy
    refused_before_work(c, "init_from_teacher=True copies the teacher: model must be", tmp_path)


@pytest.mark.parametrize("field, value, match", [
    ("nfe", (2, 2), "distill.kwargs.nfe must be an integer or a tuple of distinct"),
    ("nfe", (0, 1), "distill.kwargs.nfe must be an integer >= 1"),
    ("extra_points", -1, "distill.kwargs.extra_points must be an integer >= 0"),
    ("solver", "dpm_solver_adaptive", "distill.kwargs.solver must be one of"),
    ("afs", 1, "distill.kwargs.afs must be True or False"),
    ("typo", 1, "unknown distill.kwargs"),
])
def test_bad_kwargs_are_value_errors_before_any_work(tmp_path, field, value, match):
    c = _tiny(10)
    c.distill.kwargs[field] = value
    refused_before_work(c, match, tmp_path)


def test_bad_config_is_a_value_error_before_any_work(tmp_path):
    c = _tiny(10)
    c.model.kwargs.cond_dim = 0  # SFD-v needs the budget condition
    refused_before_work(c, "model.kwargs.cond_dim=1", tmp_path)
    c = _tiny(10)
    c.sampler.nfe = (1, 3)  # 3 was not trained
    refused_before_work(c, r"sampler.nfe=3: an SFD-v student samples with the budgets", tmp_path)
    c = _tiny(10)
    c.sampler.spacing = "logsnr"  # not the grid it is trained on
    refused_before_work(c, "sampler.spacing must be None or 'karras'", tmp_path)
    c = _tiny(10)
    c.distill.teacher = ""
    refused_before_work(c, "distill.teacher is required", tmp_path)

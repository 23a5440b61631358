"""Consistency distillation / training (train.distill.consistency): the papers' curricula, a short CD
run on an exact 2-D mixture beating the teacher's own few-step solvers, exact resume, launch.py on a
distilled workdir, and up-front ValueErrors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch
from configs import distill_gmm_cd
from samplers import registry
from samplers.core import sample
from samplers.schedules import get_schedule
from tests.distill_utils import assert_students_beat_teacher, refused_before_work, restored_state
from train import distill, jobs
from train.config import build_network, validate
from train.distill import consistency as cm
from train.loop import CHECKPOINT_DIR

# -- curricula --------------------------------------------------------------------------------------


def paper_ct_n(k, K, s0=2, s1=150):  # Song et al. (2023), App. C, written out in plain Python
    return math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


def test_ct_curriculum_is_the_papers():
    K = 10_000
    ks = np.array([0, 1, 37, 500, 2500, 5000, 9999, 10_000])
    n = cm.ct_num_points(ks, K)
    assert n.tolist() == [paper_ct_n(int(k), K) for k in ks]
    assert n[0] == 2 and n[-1] == 151  # s0 points at the start, s1 + 1 at the end
    np.testing.assert_array_equal(np.asarray(cm.ct_num_points(jnp.asarray(ks), K)), n)  # traced = numpy
    # mu(k) = exp(s0 log mu0 / (N(k) - 1)): the authors' code; the paper's N(k) would give mu(0) = mu0
    mu = cm.ct_target_decay(n)
    np.testing.assert_allclose(mu, [math.exp(2 * math.log(0.9) / (paper_ct_n(int(k), K) - 1)) for k in ks], rtol=1e-12)
    assert abs(mu[0] - 0.81) < 1e-12
    # control: the paper's printed convention is a different (and detectably different) curriculum
    assert abs(math.exp(2 * math.log(0.9) / paper_ct_n(0, K)) - mu[0]) > 0.05
    # control: s1^2 in place of (s1 + 1)^2 (one point short at the end) is rejected by the same check
    off = [math.ceil(math.sqrt(k / K * (150**2 - 4) + 4) - 1) + 1 for k in ks]
    assert off != n.tolist()


def test_ict_doubling_and_index_law():
    K, s0, s1 = 60_000, 10, 1280
    k_prime = math.floor(K / (math.log2(math.floor(s1 / s0)) + 1))  # 7500
    assert k_prime == 7500
    ks = np.array([0, 7499, 7500, 15000, 30000, 52499, 52500, 59999])
    want = [min(s0 * 2 ** math.floor(k / k_prime), s1) + 1 for k in ks]
    assert cm.ict_num_points(ks, K).tolist() == want == [11, 11, 21, 41, 161, 641, 1281, 1281]
    # index law: p(j) ~ erf((log s_j - Pm)/(sqrt2 Ps)) - erf((log s_{j+1} - Pm)/(sqrt2 Ps)) on the Karras levels
    n = 41
    levels = cm.karras_levels(jnp.int32(n), s1 + 1, 0.002, 80.0)
    s = np.array([(80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(n)])
    np.testing.assert_allclose(np.asarray(levels[:n]), s, rtol=1e-5)
    cdf = np.array([math.erf((math.log(v) + 1.1) / (math.sqrt(2) * 2.0)) for v in s])
    p = (cdf[:-1] - cdf[1:]) / np.sum(cdf[:-1] - cdf[1:])
    logits = cm.ict_index_logits(levels, jnp.int32(n))
    got = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(got[: n - 1], p, atol=1e-6)
    assert np.all(got[n - 1:] == 0)
    # the sampled indices follow p (chi-square over 40 cells); a 10%-wider lognormal (control) is rejected
    draws = np.asarray(jax.random.categorical(jax.random.PRNGKey(0), logits[: n + 8], shape=(100_000,)))
    counts = np.bincount(draws, minlength=n - 1)[: n - 1]

    def chi2(q):
        keep = q * len(draws) > 5
        return float(np.sum((counts[keep] - q[keep] * len(draws)) ** 2 / (q[keep] * len(draws)))), int(keep.sum())

    stat, dof = chi2(p)
    assert stat < dof + 5 * math.sqrt(2 * dof), (stat, dof)
    cdf_w = np.array([math.erf((math.log(v) + 1.1) / (math.sqrt(2) * 2.2)) for v in s])
    p_w = (cdf_w[:-1] - cdf_w[1:]) / np.sum(cdf_w[:-1] - cdf_w[1:])
    stat_w, dof_w = chi2(p_w)
    assert stat_w > dof_w + 5 * math.sqrt(2 * dof_w), (stat_w, dof_w)


def test_consistency_function_boundary_and_sampler():
    """f(x, t_min) = x exactly; the sampler re-noises alpha x0 + sigma z and ends on x0."""
    sch = get_schedule("edm")
    f = cm.consistency_fn(lambda x, c: jnp.full_like(x, 7.0), sch, 0.002, 0.5)
    x = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(np.asarray(f(x, 0.002)), np.asarray(x), rtol=0, atol=1e-6)
    smp = registry.build("consistency", sch, 3, "x0")
    grid = registry.grid("consistency", sch, 3)
    x0 = jnp.ones((4, 2))
    tr = smp.transition(smp.init(x0), lambda x, t: x0 * 2.0)
    assert float(tr.scale) == pytest.approx(grid.sigma[1], rel=1e-6) and float(tr.out_coef) == 1.0
    out = sample(smp, lambda x, t: x0 * 2.0, x0, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(out.x), 2.0 * np.ones((4, 2)))  # the last step is noise-free
    assert int(out.nfe) == 3


# -- a short CD run against the teacher -------------------------------------------------------------

def test_cd_students_beat_the_teachers_solvers_at_equal_nfe(tmp_path):
    """6000 steps (~15 s on 2 CPU cores); an undertrained student (60 steps) fails the same check."""
    assert_students_beat_teacher(distill_gmm_cd.get_config, "consistency", tmp_path)


# -- resume, launch, errors -------------------------------------------------------------------------

def _tiny(method, steps):
    c = distill_gmm_cd.get_config()
    c.model.kwargs = dict(hidden=16, depth=1, embed_dim=8, fourier_scale=1.0)
    c.train.batch_size, c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 32, steps, 5, 10
    c.train.lr_schedule = "constant"
    c.sampler.num_samples, c.eval.num_samples, c.eval.swd_projections = 64, 64, 16
    if method != "cd":
        c.distill.method, c.distill.teacher = method, ""
        c.distill.kwargs = dict(total_steps=20, s1=20) if method == "ct" else dict(total_steps=20, s0=2, s1=16)
    else:
        c.distill.kwargs = dict(num_points=9, segments=2)  # multistep consistency: 2 segments of 4 steps
    return c


@pytest.mark.parametrize("method", ["cd", "ct", "ict"])
def test_resumed_distillation_equals_uninterrupted(tmp_path, method):
    jobs.train(_tiny(method, 20), str(tmp_path / "once"))
    jobs.train(_tiny(method, 10), str(tmp_path / "twice"))
    jobs.train(_tiny(method, 20), str(tmp_path / "twice"))  # resumes at step 10: N(k), mu(k), target from the state
    a, b = restored_state(_tiny(method, 20), str(tmp_path / "once")), restored_state(_tiny(method, 20), str(tmp_path / "twice"))
    assert int(a.step) == int(b.step) == 20
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert isinstance(a, cm.TargetState) == (method != "ict")  # CD / CT checkpoint their target network


def test_teacher_from_a_train_workdir(tmp_path):
    """A trained checkpoint as the teacher: its EMA network (EDM-preconditioned) is what the CD step calls."""
    t = _tiny("cd", 10)
    t.mode, t.distill.method, t.distill.teacher, t.distill.kwargs = "train", "", "", {}
    t.train.loss.precond = "edm"
    launch.run(t, str(tmp_path / "teacher"))
    c = _tiny("cd", 10)
    c.distill.teacher = str(tmp_path / "teacher")
    teacher = distill.load_teacher(validate(c))
    params, _ = jobs.load_params(validate(t), str(tmp_path / "teacher"))
    x, time = jax.random.normal(jax.random.PRNGKey(0), (5, 2)), jnp.float32(3.0)
    want = jobs.build_objective(validate(t)).model_fn(build_network(validate(t)).model_fn(params))(x, time)
    np.testing.assert_allclose(np.asarray(teacher.model_fn(teacher.params)(x, time)), np.asarray(want), rtol=1e-6)
    assert teacher.predicts == "x0" and teacher.source == str(tmp_path / "teacher")
    out = launch.run(c, str(tmp_path / "student"))
    assert out["step"] == 10 and np.isfinite(out["loss"])
    c.schedule.kwargs = {"sigma_max": 40.0}  # control: a student on another schedule than the teacher's
    refused_before_work(c, "schedule must be the teacher's", tmp_path)


def test_distilled_workdir_samples_and_evaluates_through_launch(tmp_path):
    c = _tiny("cd", 10)
    launch.run(c, str(tmp_path))
    c.mode, c.sampler.name, c.sampler.nfe, c.sampler.spacing = "sample", ("consistency", "ddim"), (2,), "karras"
    summary = launch.run(c, str(tmp_path))
    for name in ("consistency", "ddim"):
        with np.load(tmp_path / "samples" / f"{name}_nfe2.npz") as f:
            assert f["x"].shape == (64, 2) and int(f["nfe"]) == 2 and np.all(np.isfinite(f["x"]))
    assert summary["step"] == 10
    c.mode = "eval"
    rows = launch.run(c, str(tmp_path))["rows"]
    assert [(r["solver"], r["nfe_used"]) for r in rows] == [("consistency", 2), ("ddim", 2)]
    assert all(np.isfinite(r["swd"]) and np.isfinite(r["log_likelihood"]) for r in rows)


def test_bad_input_is_a_value_error_before_any_work(tmp_path):
    c = _tiny("cd", 10)
    c.distill.method = "nope"
    refused_before_work(c, "distill.method must be one of", tmp_path)
    c = _tiny("cd", 10)
    c.distill.method = ""
    refused_before_work(c, "mode='distill' needs distill.method", tmp_path)
    # a teacher workdir without a checkpoint
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    cfg = distill_gmm_cd.get_config()
    cfg.mode, cfg.distill.method, cfg.distill.teacher = "train", "", ""
    (teacher / "config.json").write_text(cfg.to_json_best_effort())
    c = _tiny("cd", 10)
    c.distill.teacher = str(teacher)
    refused_before_work(c, "distill.teacher=.* has no checkpoint", tmp_path)
    # a teacher of another data shape (3-D mixture)
    cfg.data.kwargs.dim = 3
    (teacher / "config.json").write_text(cfg.to_json_best_effort())
    (teacher / CHECKPOINT_DIR / "100").mkdir(parents=True)
    refused_before_work(c, r"distill.teacher=.* models data of shape \(3,\)", tmp_path)
    c.distill.teacher = str(tmp_path / "missing")
    refused_before_work(c, "distill.teacher must be 'analytic' or the workdir", tmp_path)
    c = _tiny("cd", 10)
    c.distill.kwargs.segments = 3  # does not divide the 8 steps
    refused_before_work(c, "distill.kwargs.segments=3 must divide", tmp_path)
    c = _tiny("cd", 10)
    c.distill.kwargs.solver = "dpm_solver_pp_2m"  # multistep: needs its history
    refused_before_work(c, "distill.kwargs.solver must be one of", tmp_path)
    c = _tiny("cd", 10)
    c.predicts = "eps"
    refused_before_work(c, "predicts must be 'x0'", tmp_path)
    c = _tiny("cd", 10)
    c.sampler.name = ("shortcut",)
    refused_before_work(c, "shortcut model lives on the flow schedule", tmp_path)
    c = _tiny("cd", 10)
    c.distill.kwargs.typo = 1
    refused_before_work(c, "unknown distill.kwargs", tmp_path)

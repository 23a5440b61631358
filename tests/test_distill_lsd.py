"""LSD / LSD+ (train.distill.lsd, samplers.ode.lsd): the DDIM base is DDIM at c = 1, the 2M base at zero
corrections is the teacher's DPM-Solver++(2M) bit for bit, learnt coefficients beat the fixed ones in
trajectory error, LSD+ on either base beats the teacher's own 4-call solvers, the orbax artefact, exact
resume, launch.py on a distilled workdir, and up-front ValueErrors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import launch
from configs import distill_gmm_lsd
from samplers import registry
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.dpm_solver import multistep_tables
from samplers.ode.lsd import dpm2m_tables, lsd_sampler
from samplers.ode.multistep import multistep_orders
from samplers.schedules import get_schedule
from tests.distill_utils import TEACHER_SOLVERS, refused_before_work, restored_state
from train import distill, jobs
from train.config import build_schedule, validate
from train.data import load, mixture_of
from train.distill import lsd, quality


def test_base_step_is_ddim_at_coefficient_one_and_scales_eps():
    config = validate(distill_gmm_lsd.get_config())
    sch = build_schedule(config)
    gmm = mixture_of(config.data.kwargs)
    x_t = jax.random.normal(jax.random.PRNGKey(0), (64, 2)) * 80.0
    grid = registry.grid("ddim", sch, 4, final="zero")
    ones = {"t": grid.t[:-1], "coef": np.ones(4), "base": "ddim_eps"}
    got = sample(lsd_sampler(sch, ones, "x0"), gmm.model_fn(sch, "x0"), x_t).x
    want = sample(registry.build("ddim", sch, 4, "x0", final="zero"), gmm.model_fn(sch, "x0"), x_t).x
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-4)
    # c_i scales eps_i: on x_{i+1} = A x + B c eps with a constant eps model, c = 1.1 moves the end by 0.1 sum B
    eps = lambda x, t: jnp.ones_like(x)
    a = sample(lsd_sampler(sch, ones, "eps"), eps, x_t).x
    b = sample(lsd_sampler(sch, {**ones, "coef": np.full(4, 1.1)}, "eps"), eps, x_t).x
    s = np.append(grid.sigma[:-1], 0.0)
    np.testing.assert_allclose(np.asarray(b - a), 0.1 * (s[-1] - s[0]) * np.ones((64, 2)), rtol=1e-4)
    with pytest.raises(ValueError, match=r"coef must have shape \(4,\) for base 'ddim_eps'"):
        lsd_sampler(sch, {**ones, "coef": np.ones(3)}, "x0")
    with pytest.raises(ValueError, match="artefact base must be one of \\['ddim_eps', 'dpm_solver_pp_2m'\\]"):
        lsd_sampler(sch, {**ones, "base": "ddim"}, "x0")


def test_dpm2m_base_at_zero_corrections_is_the_teachers_dpm_solver_pp_2m():
    """The 2M base's table on traced (jnp) times is dpm_solver.multistep_tables' numpy one (N-step log-SNR /
    Karras grids, EDM and VP; float32); the untrained LSD / LSD+ student (its artefact) samples exactly what registry dpm_solver_pp_2m does
    (bit for bit; the trainer's own student path to 1e-5); control: one coefficient off by 1e-3 is rejected by
    the same comparison."""
    for name, n, spacing in (("edm", 4, "logsnr"), ("edm", 6, "karras"), ("vp_linear", 5, "logsnr")):
        grid = time_grid(get_schedule(name), n, spacing)
        A, B = multistep_tables(grid, "x0", multistep_orders(n, 2, True, False), "dpmsolver")
        got = jax.jit(dpm2m_tables)(*(jnp.asarray(a, jnp.float32) for a in (grid.alpha, grid.sigma, grid.lam)))
        np.testing.assert_allclose(got[0], A, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got[1], B, rtol=1e-5, atol=1e-7)
    config = _config("lsd_plus", 1)
    trainer = distill.method_of(validate(config), None)
    sch, gmm = trainer.schedule, mixture_of(config.data.kwargs)
    x_t = jax.random.normal(jax.random.PRNGKey(0), (256, 2)) * trainer.init_scale
    want = np.asarray(sample(registry.build("dpm_solver_pp_2m", sch, 4, "x0"), gmm.model_fn(sch, "x0"), x_t).x)
    artefact = trainer.artefact_of(trainer.initial_params())
    run = lambda art: np.asarray(sample(lsd_sampler(sch, art, "x0"), gmm.model_fn(sch, "x0"), x_t).x)
    np.testing.assert_array_equal(run(artefact), want)
    p0 = trainer.initial_params()  # the trainer's own student (float32 traced times) at its start
    mine = trainer._student(p0, gmm.model_fn(sch, "x0"), x_t, trainer._times(p0))[-1]
    np.testing.assert_allclose(np.asarray(mine), want, rtol=1e-5, atol=1e-5)
    off = artefact["coef"].copy()
    off[2, 1] += 1e-3
    assert not np.allclose(run({**artefact, "coef": off}), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"coef must have shape \(4, 3\) for base 'dpm_solver_pp_2m'"):
        lsd_sampler(sch, {**artefact, "coef": np.zeros(4)}, "x0")
    with pytest.raises(ValueError, match="the DPM-Solver\\+\\+\\(2M\\) base needs a finite log-SNR"):
        registry.SAMPLERS["lsd"].builder(sch, time_grid(sch, 4, final="zero"), "x0", base="dpm_solver_pp_2m")


def _config(method, steps, base="dpm_solver_pp_2m", final_weight=10.0):
    c = distill_gmm_lsd.get_config()
    c.distill.method = method
    c.distill.kwargs.update(base=base, final_weight=final_weight)
    c.train.num_steps, c.train.checkpoint_every, c.train.batch_size = steps, steps, 128
    return c


K_SWD = jax.random.PRNGKey(3)


@pytest.fixture(scope="module")
def mixture():
    """(the mixture, 4000 held-out draws, noise z, the teacher's DDIM / DPM-Solver++(2M) scores at 4 calls)."""
    config = validate(distill_gmm_lsd.get_config())
    gmm = mixture_of(config.data.kwargs)
    reference = load("gmm", "test", **{**dict(config.data.kwargs), "n": 4000}).x
    z = jax.random.normal(jax.random.PRNGKey(5), (4000, 2))
    teacher = [quality.scores(gmm, quality.teacher_sampler(gmm, s, 4)(z, jax.random.PRNGKey(1)), reference, K_SWD)
               for s in TEACHER_SOLVERS]
    return gmm, reference, z, teacher


def _train(tmp_path, config):
    """(trainer, learnt params) of ``config`` trained in a fresh workdir."""
    config = validate(config)
    workdir = str(tmp_path / f"{config.distill.method}_{config.distill.kwargs['base']}")
    jobs.train(config, workdir)
    return distill.method_of(config, None), jobs.load_params(config, workdir)[0]


def _student_scores(mixture, trainer, params):
    """Scores of the learnt sampler (its artefact) from the shared noise."""
    gmm, reference, z, _ = mixture
    smp = lsd_sampler(trainer.schedule, trainer.artefact_of(params), "x0")
    x = sample(smp, gmm.model_fn(trainer.schedule, "x0"), z * trainer.init_scale).x
    return quality.scores(gmm, x, reference, K_SWD)


def _teacher_bound(mixture, metric, margin):
    """s -> s[metric] < margin x the best of the teacher's DDIM / DPM-Solver++(2M) at 4 calls."""
    best = min(t[metric] for t in mixture[3])
    return lambda s: s[metric] < margin * best


def _learnt_and_untrained(tmp_path, mixture, config):
    """Scores of ``config``'s trained sampler and of its untrained start, from the shared noise."""
    trainer, params = _train(tmp_path, config)
    learnt, untrained = (_student_scores(mixture, trainer, p) for p in (params, trainer.initial_params()))
    print(config.distill.method, config.distill.kwargs.base, learnt, "untrained", untrained, "teacher", mixture[3])
    return learnt, untrained


def test_learnt_coefficients_beat_the_fixed_ones_and_lsd_plus_beats_the_teacher(tmp_path, mixture):
    """DDIM base. LSD (coefficients, 200 steps, the plain mean loss): held-out trajectory error < 0.7x that
    of c = 1 (DDIM), which fails the same check. LSD+ (also the times, 300 steps, final_weight 10) at 4
    calls: SW < 0.6x the best of the teacher's DDIM / DPM-Solver++(2M) at 4 calls, its log-lik gap < 0.5x its
    start's; the untrained sampler (c = 1, DDIM) fails the SW bound. (Its log-lik gap is not bounded by the
    teacher's: over training seeds and batch sizes it ranged 0.70 to 2.89 against the teacher's 1.42.)"""
    trainer, params = _train(tmp_path, _config("lsd", 200, "ddim_eps", final_weight=1.0))
    x_t = jax.random.normal(jax.random.PRNGKey(7), (2000, 2)) * trainer.init_scale  # not a training draw
    err = jax.jit(trainer.trajectory_error)
    fixed = float(err(trainer.initial_params(), x_t, ()))
    beats = lambda p: float(err(p, x_t, ())) < 0.7 * fixed
    print("trajectory error: learnt", float(err(params, x_t, ())), "fixed", fixed)
    assert beats(params) and not beats(trainer.initial_params())
    assert np.all(np.asarray(params["u"]) == np.asarray(trainer.initial_params()["u"]))  # LSD keeps the grid

    learnt, untrained = _learnt_and_untrained(tmp_path, mixture, _config("lsd_plus", 300, "ddim_eps"))
    swd_bound = _teacher_bound(mixture, "swd", 0.6)
    assert swd_bound(learnt) and learnt["log_lik_gap"] < 0.5 * untrained["log_lik_gap"], (learnt, untrained)
    assert not swd_bound(untrained)


def test_lsd_plus_on_the_dpm_solver_pp_2m_table_beats_the_teacher(tmp_path, mixture):
    """configs/distill_gmm_lsd.py (2M base, final_weight 10) for 300 steps at 4 calls: SW < 0.5x and log-lik
    gap < 0.6x the best of the teacher's DDIM / DPM-Solver++(2M) at 4 calls (measured over 5 training seeds /
    batch sizes: 0.21-0.23x and 0.23-0.31x); the untrained table (= the teacher's 2M, bit for bit) fails it."""
    learnt, untrained = _learnt_and_untrained(tmp_path, mixture, _config("lsd_plus", 300))
    bounds = (_teacher_bound(mixture, "swd", 0.5), _teacher_bound(mixture, "log_lik_gap", 0.6))
    assert all(b(learnt) for b in bounds), (learnt, mixture[3])
    assert not all(b(untrained) for b in bounds)


def _tiny(method, steps):
    c = distill_gmm_lsd.get_config()
    c.distill.method = method
    c.distill.kwargs = dict(nfe=3, teacher_substeps=4, base="dpm_solver_pp_2m")
    c.train.batch_size, c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 32, steps, 2, 2
    c.train.lr_schedule = "constant"
    c.sampler.nfe = (3,)
    c.sampler.num_samples, c.eval.num_samples, c.eval.swd_projections = 64, 64, 16
    return c


def test_resume_launch_and_the_artefact_round_trip(tmp_path):
    """(2M base) Resumed == uninterrupted; the artefact written with orbax is the checkpoint's sampler;
    launch.py's samples are that sampler's."""
    jobs.train(_tiny("lsd_plus", 4), str(tmp_path / "once"))
    jobs.train(_tiny("lsd_plus", 2), str(tmp_path / "twice"))
    jobs.train(_tiny("lsd_plus", 4), str(tmp_path / "twice"))
    a, b = restored_state(_tiny("lsd_plus", 4), str(tmp_path / "once")), restored_state(_tiny("lsd_plus", 4), str(tmp_path / "twice"))
    assert int(a.step) == int(b.step) == 4
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    c, tmp_path = _tiny("lsd_plus", 4), tmp_path / "once"
    path = lsd.export(c, str(tmp_path))
    artefact = lsd.load_artefact(path)
    params, _ = jobs.load_params(validate(c), str(tmp_path))
    want = distill.method_of(validate(c), None).artefact_of(params)
    assert artefact["base"] == want["base"] == "dpm_solver_pp_2m"
    for k in ("t", "coef"):
        np.testing.assert_array_equal(artefact[k], want[k])
    assert not np.allclose(artefact["coef"], 0.0)  # trained: the launch samples below use these, not plain 2M
    c.mode = "sample"
    launch.run(c, str(tmp_path))
    with np.load(tmp_path / "samples" / "lsd_nfe3.npz") as f:
        x, nfe = f["x"], int(f["nfe"])
    assert x.shape == (64, 2) and nfe == 3
    # the same draws through the artefact's sampler (launch's noise: fold_in(PRNGKey(seed), 2), batch 0)
    cfg = validate(c)
    sch = build_schedule(cfg)
    gmm = mixture_of(cfg.data.kwargs)
    kx, _ = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 2), 0))
    x_t = jax.random.normal(kx, (cfg.sampler.batch_size, 2)) * jobs.init_scale(sch)
    mine = sample(lsd_sampler(sch, artefact, "x0"), gmm.model_fn(sch, "x0"), x_t).x[:64]
    np.testing.assert_allclose(x, np.asarray(mine), rtol=1e-4, atol=1e-4)
    c.mode = "eval"
    rows = launch.run(c, str(tmp_path))["rows"]
    assert [(r["solver"], r["nfe_used"]) for r in rows] == [("lsd", 3)] and np.isfinite(rows[0]["swd"])


@pytest.mark.parametrize("method, field, value, match", [
    ("lsd", "nfe", 0, "distill.kwargs.nfe must be an integer >= 1"),
    ("lsd_plus", "nfe", 1, "distill.kwargs.nfe must be an integer >= 2"),
    ("lsd", "teacher_substeps", 0, "distill.kwargs.teacher_substeps must be an integer >= 1"),
    ("lsd", "spacing", "linspace", "distill.kwargs.spacing must be one of"),
    ("lsd", "typo", 1, "unknown distill.kwargs"),
    ("lsd", "base", "ddim", "distill.kwargs.base must be one of"),
    ("lsd_plus", "final_weight", -1.0, r"distill.kwargs.final_weight must lie in \[0.0, inf\]"),
])
def test_bad_kwargs_are_value_errors_before_any_work(tmp_path, method, field, value, match):
    c = _tiny(method, 10)
    c.distill.kwargs[field] = value
    refused_before_work(c, match, tmp_path)


def test_bad_config_is_a_value_error_before_any_work(tmp_path):
    c = _tiny("lsd", 10)
    c.sampler.nfe = (4,)  # not the learnt budget
    refused_before_work(c, r"sampler.nfe must be distill.kwargs.nfe=3", tmp_path)
    c = _tiny("lsd", 10)
    c.sampler.name = ("ddim",)
    refused_before_work(c, "sampler.name \\(of a distilled student\\) must be one of", tmp_path)
    c = _tiny("lsd", 10)
    c.schedule.name, c.predicts, c.sampler.spacing = "flow", "velocity", "uniform"  # alpha = 0 at t_max
    refused_before_work(c, "the eps step needs alpha > 0", tmp_path)

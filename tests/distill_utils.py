"""Shared pieces of the distillation tests (tests/test_distill_*.py): the quality of a distilled student
against its exact mixture teacher's own solvers at equal NFE, that check with its undertrained control,
and a workdir's restored train state."""
import os

import jax
import pytest

import launch

from train import distill, distributed, jobs
from train.checkpoint import Checkpointer
from train.config import build_network, validate
from train.data import load, mixture_of
from train.distill import quality
from train.loop import CHECKPOINT_DIR, restore_or_init
from train.optim import make_optimizer

NFES = (1, 2, 4)
TEACHER_SOLVERS = ("ddim", "dpm_solver_pp_2m")
K_SWD = jax.random.PRNGKey(3)  # the sliced-Wasserstein projections of every score


def student_scores(config, workdir, z, key, reference, sampler="consistency"):
    """Scores by NFE of the student in ``workdir`` sampled by ``sampler`` from the noise z and key."""
    config = validate(config)
    network = build_network(config)
    params, _ = jobs.load_params(config, workdir)
    gmm = mixture_of(config.data.kwargs)
    return {n: quality.scores(gmm, quality.student_sampler(config, network, params, sampler, n)(z, key),
                              reference, K_SWD) for n in NFES}


def teacher_scores(gmm, z, key, reference):
    """Scores by (solver, NFE) of the exact teacher's TEACHER_SOLVERS from the same noise z and key."""
    return {(s, n): quality.scores(gmm, quality.teacher_sampler(gmm, s, n)(z, key), reference, K_SWD)
            for s in TEACHER_SOLVERS for n in NFES}


def beats_teacher(student, teacher, margin_swd=0.5, margin_ll=0.75) -> bool:
    """At every NFE: student SW < margin_swd x the best teacher SW and log-lik gap < margin_ll x the best gap."""
    ok = True
    for n in NFES:
        best_swd = min(teacher[s, n]["swd"] for s in TEACHER_SOLVERS)
        best_gap = min(teacher[s, n]["log_lik_gap"] for s in TEACHER_SOLVERS)
        ok &= student[n]["swd"] < margin_swd * best_swd and student[n]["log_lik_gap"] < margin_ll * best_gap
    return bool(ok)


def assert_students_beat_teacher(get_config, sampler: str, tmp_path, early_steps: int = 60) -> None:
    """``get_config()`` trained in full passes ``beats_teacher`` at NFES (4000 samples, common noise); the
    control, the same config stopped after ``early_steps`` steps, fails the same check."""
    config = get_config()
    config.train.checkpoint_every = config.train.num_steps
    reference = load("gmm", "test", **{**dict(config.data.kwargs), "n": 4000}).x
    z = jax.random.normal(jax.random.PRNGKey(5), (4000, 2))
    key = jax.random.PRNGKey(1)
    teacher = teacher_scores(mixture_of(config.data.kwargs), z, key, reference)
    early = get_config()
    early.train.num_steps, early.train.checkpoint_every = early_steps, early_steps
    jobs.train(early, str(tmp_path / "early"))
    student = student_scores(early, str(tmp_path / "early"), z, key, reference, sampler)
    assert not beats_teacher(student, teacher), student
    jobs.train(config, str(tmp_path / "full"))
    student = student_scores(config, str(tmp_path / "full"), z, key, reference, sampler)
    print(student, teacher)
    assert beats_teacher(student, teacher), (student, teacher)


def restored_state(config, workdir):
    """The train state of ``workdir``'s latest checkpoint (the distillation method's state, no teacher)."""
    config = validate(config)
    network = build_network(config)
    ckpt = Checkpointer(os.path.join(workdir, CHECKPOINT_DIR))
    method = distill.method_of(config, network, with_teacher=False)
    state, _ = restore_or_init(network, make_optimizer(config.train)[0], config.seed, distributed.make_mesh(), ckpt,
                               method.init_state)
    ckpt.close()
    return state


def refused_before_work(config, match: str, tmp_path) -> None:
    """``launch.run(config)`` raises a ValueError matching ``match`` and leaves no workdir behind."""
    with pytest.raises(ValueError, match=match):
        launch.run(config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()  # rejected before any work

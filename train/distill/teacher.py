"""The teacher of a distillation run: the exact mixture (``distill.teacher="analytic"``) or a trained workdir.

A ``Teacher`` is ``apply(params, x, t)`` (its prediction of ``predicts`` in ``schedule``'s time)
with its frozen ``params`` (``()`` for the analytic mixture), so a train step receives the
parameters as an argument (``train.loop``'s ``frozen``) instead of baking them into the program.

``check_teacher(config)`` validates ``distill.teacher`` without loading anything heavy: the
analytic teacher needs ``data.name="gmm"``; a workdir needs ``config.json`` (written by
``launch.py``), a complete checkpoint, the student's data shape and the student's schedule.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from samplers.schedules import Schedule

ANALYTIC = "analytic"


class Teacher(NamedTuple):
    apply: Callable  # apply(params, x, t) -> the teacher's ``predicts`` output
    params: Any  # frozen parameters (() for an analytic teacher)
    predicts: str
    schedule: Schedule
    source: str  # "analytic" or the workdir

    def model_fn(self, params) -> Callable:
        """The samplers' ``model_fn(x, t)`` of the teacher with ``params`` (e.g. the step's ``frozen``)."""
        return lambda x, t: self.apply(params, x, t)


class WithTeacher:
    """Mixin of the distillation trainers (dataclasses with a ``teacher`` field): ``frozen``, the teacher's
    parameters that the loop passes to the jitted step, () without a teacher."""

    @property
    def frozen(self):
        return self.teacher.params if self.teacher is not None else ()


def per_sample_times(fn: Callable) -> Callable:
    """``fn(x, t)`` taking a scalar t, extended to one t per sample (shape (B,)) by ``vmap``."""

    def wrapped(x, t):
        t = jnp.asarray(t)
        if t.ndim == 0:
            return fn(x, t)
        return jax.vmap(lambda xi, ti: fn(xi[None], ti)[0])(x, t)

    return wrapped


def _checkpoint_steps(workdir: str) -> list[int]:
    from train.loop import CHECKPOINT_DIR

    path = os.path.join(workdir, CHECKPOINT_DIR)
    if not os.path.isdir(path):
        return []
    return sorted(int(d) for d in os.listdir(path) if d.isdigit() and os.path.isdir(os.path.join(path, d)))


def teacher_config(workdir: str):
    """The resolved config of the train run in ``workdir`` (its ``config.json``)."""
    from train.config import resolve

    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"distill.teacher={workdir!r} is not the workdir of a train run: no config.json there")
    with open(path) as f:
        cfg = resolve({k: v for k, v in json.load(f).items() if k != "distill"})
    return cfg


def check_teacher(config) -> None:
    """ValueError naming ``distill.teacher`` (or ``schedule``) unless the teacher fits the student."""
    from train.config import event_shape

    source = config.distill.teacher
    if source == ANALYTIC:
        if config.data.name != "gmm":
            raise ValueError(f"distill.teacher='analytic' is the exact mixture of data.name='gmm', got "
                             f"data.name={config.data.name!r}")
        return
    if not os.path.isdir(source):
        raise ValueError(f"distill.teacher must be 'analytic' or the workdir of a train run; no directory {source!r}")
    cfg = teacher_config(source)
    if not _checkpoint_steps(source):
        raise ValueError(f"distill.teacher={source!r} has no checkpoint: train it first (mode=train)")
    if event_shape(cfg) != event_shape(config):
        raise ValueError(f"distill.teacher={source!r} models data of shape {event_shape(cfg)} ({cfg.data.name}), "
                         f"the student's data has shape {event_shape(config)} ({config.data.name})")
    if (cfg.schedule.name, dict(cfg.schedule.kwargs)) != (config.schedule.name, dict(config.schedule.kwargs)):
        raise ValueError(f"schedule must be the teacher's ({cfg.schedule.name} {dict(cfg.schedule.kwargs)}) for "
                         f"distill.teacher={source!r}, got {config.schedule.name} {dict(config.schedule.kwargs)}")


def load_teacher(config) -> Teacher:
    """The teacher of ``config.distill`` (checked by ``check_teacher`` first)."""
    from train.config import build_network, build_objective, build_schedule

    check_teacher(config)
    source = config.distill.teacher
    if source == ANALYTIC:
        from train.data import mixture_of

        schedule = build_schedule(config)
        fn = per_sample_times(mixture_of(config.data.kwargs).model_fn(schedule, config.predicts))
        return Teacher(lambda params, x, t: fn(x, t), (), config.predicts, schedule, ANALYTIC)
    from train.jobs import load_params

    cfg = teacher_config(source)
    cfg.sampler.use_ema = bool(config.distill.teacher_ema)
    network = build_network(cfg)
    objective = build_objective(cfg)
    params, _ = load_params(cfg, source)
    return Teacher(lambda p, x, t: objective.model_fn(network.model_fn(p))(x, t), params, cfg.predicts,
                   objective.schedule, source)

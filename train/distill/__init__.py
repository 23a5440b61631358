"""Distillation and few-step trainers: each is a ``Method`` of the one train loop (``train.loop``).

    python launch.py --config=configs/distill_gmm_cd.py                      # mode=distill: train the student
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=sample # the student's samples
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=eval   # its metrics

The config's ``distill`` section (``train.config.defaults()``) names the method and the teacher:
``distill.method`` (a key of ``METHODS``), ``distill.teacher`` (``"analytic"``: the exact
Gaussian mixture of a ``gmm`` data section, no training; or the workdir of a ``train`` run, whose
``config.json`` and latest checkpoint are read; ``""``: no teacher, for methods trained from
scratch), ``distill.teacher_ema`` and ``distill.kwargs`` (the method's own hyper-parameters,
free-form, checked by the method). The student network is ``config.model``; it is trained in the
config's ``schedule`` and is sampled through ``samplers.registry`` like any model.

Registering a method (``METHODS[name] = DistillMethod(...)``)::

    DistillMethod(
        build,        # build(config, network, teacher) -> a loop Method (see train.loop.ObjectiveMethod):
                      #   .init_state(network, tx, key) -> TrainState or a subclass (target nets...);
                      #   .frozen -> pytree given to every step, not checkpointed (teacher.params);
                      #   .train_step(network, tx, decay, warmup) -> step(state, batch, key, frozen)
                      #     -> (state, {"loss", "grad_norm", ...}); curricula from state.step inside.
                      #   ``teacher`` is None when only the state's shapes are needed (sample / eval
                      #   restore a distilled workdir without its teacher): init_state must then still
                      #   give the right shapes.
        model_fn,     # model_fn(config, network, params, sampler_name, nfe) -> the samplers'
                      #   model_fn(x, t), predicting config.predicts, for a run of ``nfe`` calls
        samplers,     # registry names the student may be sampled with (sampler.name is checked)
        teacher,      # "required" | "optional" | "none"
        check,        # check(config) -> None: ValueError naming the bad distill.kwargs field
        sampler,      # optional sampler(config, params, sampler_name, nfe) -> Sampler, for students whose
                      #   learnt part is the sampler itself (LSD's coefficients); None: registry.build
    )

``check(config)`` (called by ``train.config.validate``) validates the whole section before any
work: unknown method, teacher workdir without a checkpoint, a teacher of another data shape or
schedule are ``ValueError``s naming the field. ``method_of(config, network)`` builds the loop
``Method`` (teacher loaded); ``student_model_fn(config, network)`` gives
``fn(params, name, nfe) -> model_fn`` for ``train.jobs``'s sample and eval.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from samplers.ode.common import check_choice
from train.distill.teacher import Teacher, check_teacher, load_teacher

TEACHER_MODES = ("required", "optional", "none")


class DistillMethod(NamedTuple):
    build: Callable[..., Any]  # (config, network, teacher | None) -> loop Method
    model_fn: Callable[..., Callable]  # (config, network, params, sampler_name, nfe) -> model_fn(x, t)
    samplers: tuple[str, ...]  # registry sampler names of the student
    teacher: str = "required"  # one of TEACHER_MODES
    check: Callable[[Any], None] = lambda config: None  # validates distill.kwargs
    sampler: Callable[..., Any] | None = None  # (config, params, sampler_name, nfe) -> Sampler, or None


METHODS: dict[str, DistillMethod] = {}


def register(name: str, method: DistillMethod) -> None:
    """Add ``method`` under ``name`` (a ValueError if the name is taken)."""
    if name in METHODS:
        raise ValueError(f"distillation method {name!r} is already registered")
    check_choice("teacher", method.teacher, TEACHER_MODES)
    METHODS[name] = method


def kwargs_over(config, defaults: dict) -> dict:
    """``config.distill.kwargs`` merged over a method's ``defaults``; a ValueError names an unknown field."""
    given = dict(config.distill.kwargs)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"unknown distill.kwargs {unknown} for distill.method={config.distill.method!r}; "
                         f"fields: {sorted(defaults)}")
    return {**defaults, **given}


def names() -> list[str]:
    return sorted(METHODS)


def get(config) -> DistillMethod:
    """The ``DistillMethod`` of ``config.distill.method`` (a ValueError naming the field if unknown)."""
    check_choice("distill.method", config.distill.method, names())
    return METHODS[config.distill.method]


def check(config) -> None:
    """Validate ``config.distill`` (method, teacher, kwargs) and the student samplers; no work is done."""
    method = get(config)
    teacher = config.distill.teacher
    if method.teacher == "required" and not teacher:
        raise ValueError(f"distill.teacher is required by distill.method={config.distill.method!r}: 'analytic' "
                         f"or the workdir of a train run")
    if method.teacher == "none" and teacher:
        raise ValueError(f"distill.method={config.distill.method!r} takes no teacher, got distill.teacher={teacher!r}")
    if teacher:
        check_teacher(config)
    names_ = config.sampler.name if isinstance(config.sampler.name, (tuple, list)) else (config.sampler.name,)
    for name in names_:
        check_choice("sampler.name (of a distilled student)", name, method.samplers)
    method.check(config)


def method_of(config, network, with_teacher: bool = True):
    """The loop ``Method`` of ``config.distill`` for the student ``network`` (teacher loaded if any)."""
    method = get(config)
    teacher = load_teacher(config) if with_teacher and config.distill.teacher else None
    return method.build(config, network, teacher)


def student_model_fn(config, network) -> Callable:
    """``fn(params, sampler_name, nfe) -> model_fn(x, t)`` of the student of ``config.distill``."""
    method = get(config)
    return lambda params, name, nfe: method.model_fn(config, network, params, name, nfe)


def student_sampler(config, params) -> Callable | None:
    """``fn(sampler_name, nfe) -> Sampler`` built from the student's ``params`` if its method learns its
    sampler (``DistillMethod.sampler``), else None (``samplers.registry.build``)."""
    method = get(config)
    if method.sampler is None:
        return None
    return lambda name, nfe: method.sampler(config, params, name, nfe)


__all__ = ["DistillMethod", "METHODS", "Teacher", "check", "get", "load_teacher", "method_of", "names",
           "register", "student_model_fn", "student_sampler"]

# the built-in methods register themselves on import (after the names above exist)
from train.distill import consistency, lsd, pcm, sfd, shortcut  # noqa: E402,F401

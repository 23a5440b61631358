"""Sample quality of a distilled student against its exact mixture teacher, at equal model calls.

The numbers of the tests and of bench/distill.py: for samples x of the mixture p (data.kwargs
of a ``gmm`` config) and held-out draws of p,

* ``swd``: sliced Wasserstein-2 (``models.metrics.sliced_wasserstein``) to the held-out draws;
* ``log_lik``: the exact mean log p(x) (``models.metrics.gmm_log_likelihood``) and ``log_lik_gap``
  = |log_lik - mean log p(held-out)|: a sampler that spreads mass between the modes scores low,
  one that over-concentrates scores high, so "closer to the data" is the smaller gap.

Students and teachers start from the same standard normal draws z (scaled by the schedule's
``init_scale``) and the same sampler key.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from models import metrics
from samplers import registry
from samplers.core import sample
from samplers.schedules import get_schedule

TEACHER_SCHEDULE = "edm"  # the teacher's samplers run on the EDM schedule (sigma = t in [0.002, 80])


def scores(gmm, x, reference, key, num_projections: int = 256) -> dict:
    """``swd``, ``log_lik`` and ``log_lik_gap`` of samples ``x`` against held-out ``reference`` draws."""
    ll = float(metrics.gmm_log_likelihood(gmm, x))
    ll_ref = float(metrics.gmm_log_likelihood(gmm, reference))
    swd = float(metrics.sliced_wasserstein(x, reference, key, num_projections))
    return {"swd": swd, "log_lik": ll, "log_lik_gap": abs(ll - ll_ref)}


def _runner(smp, model_fn, scale: float) -> Callable:
    run = jax.jit(lambda z, key: sample(smp, model_fn, z * scale, key).x)
    return lambda z, key: run(jnp.asarray(z, jnp.float32), key)


def teacher_sampler(gmm, solver: str, nfe: int, schedule_name: str = TEACHER_SCHEDULE) -> Callable:
    """``fn(z, key) -> samples`` of the exact mixture with library solver ``solver`` at ``nfe`` calls."""
    from train.jobs import init_scale

    schedule = get_schedule(schedule_name)
    smp = registry.build(solver, schedule, nfe, "x0")
    return _runner(smp, gmm.model_fn(schedule, "x0"), init_scale(schedule))


def student_sampler(config, network, params, name: str, nfe: int) -> Callable:
    """``fn(z, key) -> samples`` of the distilled student of ``config`` with sampler ``name`` at ``nfe`` calls
    (the student's learnt sampler if its method learns one, ``distill.student_sampler``: LSD)."""
    from train import distill
    from train.config import build_schedule
    from train.jobs import init_scale

    schedule = build_schedule(config)
    learnt = distill.student_sampler(config, params)
    smp = (registry.build(name, schedule, nfe, config.predicts, spacing=config.sampler.spacing,
                          final=config.sampler.final) if learnt is None else learnt(name, nfe))
    model_fn = distill.student_model_fn(config, network)(params, name, nfe)
    return _runner(smp, model_fn, init_scale(schedule))

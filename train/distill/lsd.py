"""LSD and LSD+ (Fu et al. 2025, "Learnable Sampler Distillation for Discrete Diffusion Models"),
here for continuous models, as objectives of the one train loop (methods ``"lsd"``, ``"lsd_plus"``).

The student is the frozen teacher sampled by a base solver of the multistep engine with N model
calls and a learnt coefficient table (``samplers.ode.lsd``; ``distill.kwargs.base``): ``"ddim_eps"``
scales each step's eps by a learnt c_i (initialised at 1: plain DDIM, last step to sigma = 0);
``"dpm_solver_pp_2m"`` adds learnt corrections (dA_i, dB_i0, dB_i1) to DPM-Solver++(2M)'s table
(initialised at 0: the student is the teacher's own 2M at N calls, ending at t_min). LSD+ also learns
the N - 1 inner times, parameterised as ``samplers.ode.learnt_grid`` does (lambda_k = lambda_0 +
(lambda(t_min) - lambda_0) sum_{j<k} softmax([u, 0])_j: any u is a valid decreasing grid), started
from ``spacing``. The train state's parameters are {"coef": (N,) or (N, 3), "u": (N - 1,)} (u stays
at its start for LSD).

Loss (per batch, from x_T = init_scale z): the teacher integrates from x_T with ``teacher_substeps``
first-order data-prediction steps (DDIM, uniform in log-SNR) inside every student interval, so its
trajectory is read at the student's own times t_1..t_{N-1} and at the base's end (the last interval
ends at t_min; for ddim_eps one more step to sigma = 0); the student runs its N steps from the same
x_T, and the loss is the mean over the N steps of the mean squared distance between the student's
x_{i+1} and the teacher's, the last step's term weighted by ``final_weight`` (1: the plain mean;
the discrete trainer's knob of the same name). Gradients flow through the whole student trajectory
(and, for LSD+, through the times of both trajectories).

Reuse by other bases (e.g. a discrete sampler exposing per-step coefficients): the trainer only
needs ``_times`` (the grid of the parameters), ``_student`` (the N intermediates from x_T) and
``_teacher`` (the targets at the same times); a base supplies those three. The continuous bases
differ only in ``samplers.ode.lsd.tables`` (and where their grid ends).

Sampling: the learnt state is an artefact (``artefact_of``: times, coefficients, base) loaded into a
``Sampler`` by ``samplers.ode.lsd.lsd_sampler``; ``save_artefact`` / ``load_artefact`` write / read it
with orbax (``learnt_grid.save_grid``). ``launch.py`` sample / eval build that sampler from the
workdir's checkpoint (``DistillMethod.sampler``; ``sampler.name="lsd"``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from samplers.checks import check_int, check_number
from samplers.grids import time_grid
from samplers.ode.common import check_choice, combine
from samplers.ode.learnt_grid import load_grid, params_from_grid, save_grid
from samplers.ode.lsd import BASES, FINAL_ZERO, SPACE, initial_coef, lsd_sampler, tables
from samplers.param import as_prediction
from samplers.schedules import Schedule
from train.distill import DistillMethod, kwargs_over, register
from train.distill.teacher import WithTeacher
from train.loop import TrainState, apply_gradients

DEFAULTS = dict(nfe=4, spacing="logsnr", teacher_substeps=32, base="ddim_eps", final_weight=1.0)
SPACINGS = ("logsnr", "karras", "uniform", "quadratic")
ARTEFACT = "lsd_artefact"  # the artefact's folder in a workdir (``save_artefact``)


@dataclasses.dataclass(frozen=True, eq=False)
class LSDTrainer(WithTeacher):
    """A loop ``Method`` (``train.loop.ObjectiveMethod``) for LSD (``learn_steps=False``) / LSD+."""

    schedule: Schedule
    opts: dict
    learn_steps: bool
    init_scale: float
    teacher: Any = None

    @property
    def base(self) -> str:
        return self.opts["base"]

    def initial_params(self) -> dict:
        """{"coef": the base's own coefficients (``samplers.ode.lsd.initial_coef``), "u": (N - 1,) of the start
        grid (``spacing``: N model times then sigma = 0 for ddim_eps, N steps to t_min for dpm_solver_pp_2m)."""
        sch, n = self.schedule, self.opts["nfe"]
        start = time_grid(sch, n, self.opts["spacing"], final="zero" if FINAL_ZERO[self.base] else None)
        u = params_from_grid(sch, start, sch.t_min)
        return {"coef": jnp.asarray(initial_coef(self.base, n), jnp.float32), "u": jnp.asarray(u, jnp.float32)}

    def init_state(self, network, tx, key):
        del network, key  # the student is the frozen teacher: its parameters are the sampler's
        params = self.initial_params()
        return TrainState(jnp.zeros((), jnp.int32), params, jax.tree_util.tree_map(jnp.copy, params), tx.init(params))

    # -- the three pieces of a base (module docstring) ---------------------------------------------
    def _times(self, params, xp=jnp):
        """(t (N,), alpha, sigma, lambda (N + 1,)): the N model times t_max, then the N - 1 inner times; the
        grid's last point is t_min (dpm_solver_pp_2m) or sigma = 0 after it (ddim_eps: alpha = 1, lambda =
        inf). jnp with traced u, or numpy float64 (``artefact_of``)."""
        sch = self.schedule
        u = params["u"] if self.learn_steps or xp is np else jax.lax.stop_gradient(params["u"])
        v = xp.append(u, 0.0)
        w = jax.nn.softmax(v) if xp is jnp else np.exp(v - v.max()) / np.exp(v - v.max()).sum()
        lam0, lam1 = float(sch.lambda_(np.float64(sch.t_max))), float(sch.lambda_(np.float64(sch.t_min)))
        inner = sch.t_from_lambda(lam0 + (lam1 - lam0) * xp.cumsum(w)[:-1])
        t = xp.concatenate([xp.full((1,), sch.t_max, u.dtype), inner])
        if FINAL_ZERO[self.base]:
            return t, xp.append(sch.alpha(t), 1.0), xp.append(sch.sigma(t), 0.0), xp.append(sch.lambda_(t), np.inf)
        end = xp.append(t, sch.t_min)
        return t, sch.alpha(end), sch.sigma(end), sch.lambda_(end)

    def _student(self, params, out_fn, x, times):
        """The N student states from x, stacked (``out_fn``: the model in the base's space; one scan over
        the steps with the K = B.shape[1] latest outputs as its history, as ``linear_multistep`` keeps it)."""
        t, alpha, sigma, lam = times
        A, B = tables(self.base, alpha, sigma, lam, params["coef"])

        def step(carry, row):
            x, hist = carry
            ti, a, b = row
            hist = jnp.concatenate([out_fn(x, ti)[None], hist[:-1]])
            x = a * x + combine(b, hist)
            return (x, hist), x

        hist = jnp.zeros((B.shape[1],) + x.shape, x.dtype)
        return jax.lax.scan(step, (x, hist), (t, A, B))[1]

    def _teacher(self, x0_fn, x, times):
        """The teacher's trajectory at the student's times (data-prediction DDIM sub-steps; one scan over
        the intervals of a scan over their sub-steps, so the model is traced once)."""
        sch, k = self.schedule, self.opts["teacher_substeps"]
        t = jnp.append(times[0], sch.t_min)
        lam = jax.vmap(lambda a, b: jnp.linspace(a, b, k + 1))(sch.lambda_(t[:-1]), sch.lambda_(t[1:]))
        ts = sch.t_from_lambda(lam)
        a, s = sch.alpha(ts), sch.sigma(ts)
        rows = (ts[:, :-1], s[:, 1:] / s[:, :-1], a[:, 1:] - s[:, 1:] * a[:, :-1] / s[:, :-1])  # (N, k) each

        def interval(x, r):
            x = jax.lax.scan(lambda x, q: (q[1] * x + q[2] * x0_fn(x, q[0]), None), x, r)[0]
            return x, x

        x, ends = jax.lax.scan(interval, x, rows)
        out = list(ends)
        if FINAL_ZERO[self.base]:
            out[-1] = x0_fn(x, sch.t_min)  # t_min -> sigma = 0
        return out

    def trajectory_error(self, params, x_t, frozen):
        """The loss: mean over the N steps of the mean squared distance between the student's x_{i+1}
        and the teacher's (both from ``x_t`` at t_max), the last step's term times ``final_weight``."""
        teacher, sch = self.teacher, self.schedule
        model = teacher.model_fn(frozen)
        times = self._times(params)
        target = self._teacher(as_prediction(model, sch, teacher.predicts, "x0"), x_t, times)
        if not self.learn_steps:
            target = jax.lax.stop_gradient(target)
        student = self._student(params, as_prediction(model, sch, teacher.predicts, SPACE[self.base]), x_t, times)
        per_step = jnp.stack([jnp.mean(jnp.square(s - g)) for s, g in zip(student, target)])
        return jnp.mean(per_step.at[-1].multiply(self.opts["final_weight"]))

    def train_step(self, network, tx, decay: float, warmup: bool = True) -> Callable:
        def step(state, batch, key, frozen):
            x_t = jax.random.normal(key, batch.shape, batch.dtype) * self.init_scale  # data: batch shape only
            loss, grads = jax.value_and_grad(self.trajectory_error)(state.params, x_t, frozen)
            new = apply_gradients(state, grads, tx, decay, warmup)
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

        return step

    def artefact_of(self, params) -> dict:
        """The sampler artefact {"t", "coef", "base"} of the parameters ``params`` (times in float64)."""
        params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
        t = self._times(params, np)[0]
        return {"t": t if FINAL_ZERO[self.base] else np.append(t, self.schedule.t_min), "coef": params["coef"],
                "base": self.base}


# -- artefacts ---------------------------------------------------------------------------------------

def save_artefact(path: str, artefact: dict) -> None:
    """Write an LSD artefact with orbax (``samplers.ode.learnt_grid.save_grid``)."""
    save_grid(path, artefact)


def load_artefact(path: str) -> dict:
    return load_grid(path)


def export(config, workdir: str) -> str:
    """Write the artefact of ``workdir``'s latest checkpoint to ``workdir/lsd_artefact``; its path."""
    from train import jobs
    from train.config import validate

    config = validate(config)
    params, _ = jobs.load_params(config, workdir)
    path = os.path.abspath(os.path.join(workdir, ARTEFACT))
    save_artefact(path, _build(config, None).artefact_of(params))
    return path


# -- registration ------------------------------------------------------------------------------------

def options(config) -> dict:
    """``distill.kwargs`` over ``DEFAULTS``; a ValueError names an unknown field."""
    return kwargs_over(config, DEFAULTS)


def check(config) -> None:
    from train.config import build_schedule

    o = options(config)
    check_int("distill.kwargs.nfe", o["nfe"], 2 if config.distill.method == "lsd_plus" else 1)
    check_int("distill.kwargs.teacher_substeps", o["teacher_substeps"], 1)
    check_choice("distill.kwargs.spacing", o["spacing"], SPACINGS)
    check_choice("distill.kwargs.base", o["base"], BASES)
    check_number("distill.kwargs.final_weight", o["final_weight"], 0.0)
    sch = build_schedule(config)
    if not float(sch.alpha(np.float64(sch.t_max))) > 0.0 or not float(sch.sigma(np.float64(sch.t_min))) > 0.0:
        raise ValueError(f"LSD's {SPACE[o['base']]} step needs alpha > 0 and sigma > 0 on the schedule's range: "
                         f"schedule {sch.name!r} fails at an end")
    nfes = config.sampler.nfe if isinstance(config.sampler.nfe, (tuple, list)) else (config.sampler.nfe,)
    if any(n != o["nfe"] for n in nfes):
        raise ValueError(f"sampler.nfe must be distill.kwargs.nfe={o['nfe']} (the learnt sampler's budget), got "
                         f"{tuple(nfes)}")


def _build(config, teacher, learn_steps: bool | None = None):
    from train.config import build_schedule
    from train.jobs import init_scale

    schedule = build_schedule(config)
    learn = config.distill.method == "lsd_plus" if learn_steps is None else learn_steps
    return LSDTrainer(schedule, options(config), learn, init_scale(schedule), teacher)


def build(config, network, teacher):
    return _build(config, teacher)


def model_fn(config, network, params, name, nfe):
    """The teacher (the student shares its network; the learnt part is the sampler)."""
    from train.distill.teacher import load_teacher

    del network, params, name, nfe
    with jax.ensure_compile_time_eval():  # called inside the sampler's jit: a workdir teacher's restore needs concrete arrays
        teacher = load_teacher(config)
    fn = teacher.model_fn(teacher.params)
    return as_prediction(fn, teacher.schedule, teacher.predicts, config.predicts)


def sampler(config, params, name, nfe):
    """The learnt ``Sampler`` of the checkpoint's ``params`` (``name`` = "lsd", ``nfe`` = distill.kwargs.nfe)."""
    del name, nfe
    trainer = _build(config, None)
    return lsd_sampler(trainer.schedule, trainer.artefact_of(params), config.predicts)


for _name in ("lsd", "lsd_plus"):
    register(_name, DistillMethod(build, model_fn, ("lsd",), "required", check, sampler))

"""SFD and SFD-v (Zhou et al. 2024, "Simple and Fast Distillation of Diffusion Models") as an
objective of the one train loop.

The student is a copy of the teacher (a workdir teacher's parameters; a fresh network for the
analytic mixture) fine-tuned so that ONE Euler step per interval of a coarse grid (polynomial
rho = 7, ``samplers.ode.sfd``) lands on the teacher's trajectory. Per batch, from x_T = init_scale z:

* the teacher's trajectory: a library solver (``solver``, DPM-Solver++(3M) by default, as the
  paper's DPM-Solver++(3)) on the fine grid that puts ``extra_points`` = M more polynomial points
  in every coarse interval (the rho = 7 grid of N (M + 1) steps contains the N-step one), read at
  the coarse points x*_1..x*_N (no gradient);
* the student: the SFD sampler itself (``registry.build("sfd" | "euler", ...)``) from x_T; its
  model step k starts from its own *detached* previous output and is scored by the L1 distance
  mean |x_{k+1} - x*_{k+1}| to the teacher at the same coarse point; the loss is the sum over the
  intervals (the paper's per-interval backward passes, accumulated). With ``afs`` the first
  interval is the analytical first step (no model call, nothing to learn).

``nfe`` is the student's number of model calls; several (a tuple) is SFD-v: each batch draws one
of them (``lax.switch`` over one branch per budget) and the network is conditioned on it
(``models.mlp.MLP(cond_dim=1)``, condition nfe / max(nfe)). Sampling: ``registry`` sampler
``"sfd"`` (``afs=True``) or ``"euler"`` with ``sampler.spacing="karras"``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from samplers import registry
from samplers.checks import check_int
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.common import check_choice
from samplers.schedules import Schedule
from train.distill import DistillMethod, kwargs_over, register
from train.distill.teacher import WithTeacher
from train.loop import TrainState, apply_gradients, init_state

# teacher solvers on the fine grid (deterministic, built from (schedule, grid, predicts))
TEACHER_SOLVERS = ("dpm_solver_pp_3m", "dpm_solver_pp_2m", "heun", "euler", "ddim", "dpm_solver_3", "ipndm", "unipc")
DEFAULTS = dict(nfe=4, extra_points=3, solver="dpm_solver_pp_3m", afs=True, init_from_teacher=True)


def nfes_of(o: dict) -> tuple[int, ...]:
    """The student's budgets: ``nfe`` as a tuple (one: SFD, several: SFD-v)."""
    return tuple(o["nfe"]) if isinstance(o["nfe"], (tuple, list)) else (o["nfe"],)


def student_sampler_name(o: dict) -> str:
    return "sfd" if o["afs"] else "euler"


def coarse_grid(schedule: Schedule, o: dict, nfe: int):
    """The student's grid at ``nfe`` calls: the one its sampler uses (polynomial rho = 7)."""
    return registry.grid(student_sampler_name(o), schedule, nfe, spacing="karras")


@dataclasses.dataclass(frozen=True, eq=False)
class SFDTrainer(WithTeacher):
    """A loop ``Method`` (``train.loop.ObjectiveMethod``) for SFD / SFD-v."""

    schedule: Schedule
    objective: Any  # train.losses.Objective: the student's parameterisation (EDM preconditioning etc.)
    opts: dict
    init_scale: float
    teacher: Any = None

    @property
    def nfes(self) -> tuple[int, ...]:
        return nfes_of(self.opts)

    def student(self, network, params, nfe: int) -> Callable:
        """The student's ``model_fn(x, t)`` at budget ``nfe`` (conditioned on it for SFD-v)."""
        cond = jnp.full((1,), nfe / max(self.nfes), jnp.float32) if len(self.nfes) > 1 else None
        return self.objective.model_fn(lambda x, c: network.apply(params, x, c, cond=cond))

    def init_state(self, network, tx, key):
        base = init_state(network, tx, key)
        if self.teacher is None or self.teacher.source == "analytic" or not self.opts["init_from_teacher"]:
            return base
        params = jax.tree_util.tree_map(jnp.array, self.teacher.params)  # the copy of the teacher
        return TrainState(base.step, params, jax.tree_util.tree_map(jnp.copy, params), tx.init(params))

    def _branch(self, network, nfe: int) -> Callable:
        """loss(params, z, frozen) of the budget ``nfe``: the teacher's trajectory, the student's steps."""
        o, sch = self.opts, self.schedule
        grid = coarse_grid(sch, o, nfe)
        m = o["extra_points"] + 1
        fine = time_grid(sch, grid.num_steps * m, "karras")
        teacher_smp = registry.SAMPLERS[o["solver"]].builder(sch, fine, self.teacher.predicts)
        student_smp = registry.build(student_sampler_name(o), sch, nfe, self.objective.predicts, spacing="karras")
        first = grid.num_steps - student_smp.num_steps  # 1 with the analytical first step

        def loss(params, z, frozen):
            x_t = z * self.init_scale
            _, traj = sample(teacher_smp, self.teacher.model_fn(frozen), x_t, trajectory=lambda s: s.x)
            target = jax.lax.stop_gradient(traj[m - 1::m])  # the teacher at coarse points 1..N
            model = self.student(network, params, nfe)
            state, total = student_smp.init(x_t), 0.0
            for k in range(student_smp.num_steps):
                state = student_smp.step(state.replace(x=jax.lax.stop_gradient(state.x)), None, model)
                total = total + jnp.mean(jnp.abs(state.x - target[first + k]))
            return total

        return loss

    def train_step(self, network, tx, decay: float, warmup: bool = True) -> Callable:
        branches = [self._branch(network, n) for n in self.nfes]

        def step(state, batch, key, frozen):
            kz, kn = jax.random.split(key)
            z = jax.random.normal(kz, batch.shape, batch.dtype)  # the data only fixes the batch shape
            which = jax.random.randint(kn, (), 0, len(branches))

            def loss_fn(params):
                return jax.lax.switch(which, branches, params, z, frozen)

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            new = apply_gradients(state, grads, tx, decay, warmup)
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads),
                         "nfe": jnp.asarray(self.nfes, jnp.int32)[which]}

        return step


# -- registration ------------------------------------------------------------------------------------

def options(config) -> dict:
    """``distill.kwargs`` over ``DEFAULTS``; a ValueError names an unknown field."""
    return kwargs_over(config, DEFAULTS)


def check(config) -> None:
    from train.config import build_network, build_schedule
    from train.distill.teacher import ANALYTIC, teacher_config

    o = options(config)
    nfes = nfes_of(o)
    if not nfes or len(set(nfes)) != len(nfes):
        raise ValueError(f"distill.kwargs.nfe must be an integer or a tuple of distinct integers, got {o['nfe']!r}")
    for n in nfes:
        check_int("distill.kwargs.nfe", n, 1)
    if len(nfes) > 1:
        for n in (config.sampler.nfe if isinstance(config.sampler.nfe, (tuple, list)) else (config.sampler.nfe,)):
            if n not in nfes:
                raise ValueError(f"sampler.nfe={n!r}: an SFD-v student samples with the budgets it is trained "
                                 f"for, distill.kwargs.nfe={list(nfes)}")
    if config.sampler.spacing not in (None, "karras"):
        raise ValueError(f"sampler.spacing must be None or 'karras' (the polynomial grid the SFD student is "
                         f"trained on), got {config.sampler.spacing!r}")
    check_int("distill.kwargs.extra_points", o["extra_points"], 0)
    check_choice("distill.kwargs.solver", o["solver"], TEACHER_SOLVERS)
    for field in ("afs", "init_from_teacher"):
        if not isinstance(o[field], bool):
            raise ValueError(f"distill.kwargs.{field} must be True or False, got {o[field]!r}")
    want = 1 if len(nfes) > 1 else 0
    if getattr(build_network(config).module, "cond_dim", 0) != want:
        raise ValueError(f"distill.kwargs.nfe={o['nfe']!r}: the student must be model.name='mlp' with "
                         f"model.kwargs.cond_dim={want} ({'SFD-v: conditioned on the budget' if want else 'SFD'})")
    schedule = build_schedule(config)
    for n in nfes:  # the student's sampler and the teacher's fine-grid solver build (else their ValueError)
        grid = coarse_grid(schedule, o, n)
        registry.build(student_sampler_name(o), schedule, n, config.predicts, spacing="karras")
        if config.distill.teacher == ANALYTIC:
            fine = time_grid(schedule, grid.num_steps * (o["extra_points"] + 1), "karras")
            registry.SAMPLERS[o["solver"]].builder(schedule, fine, config.predicts)
    source = config.distill.teacher
    if source != ANALYTIC and o["init_from_teacher"]:
        cfg = teacher_config(source)
        if (cfg.model.name, dict(cfg.model.kwargs)) != (config.model.name, dict(config.model.kwargs)):
            raise ValueError(f"distill.kwargs.init_from_teacher=True copies the teacher: model must be the "
                             f"teacher's ({cfg.model.name} {dict(cfg.model.kwargs)}), got {config.model.name} "
                             f"{dict(config.model.kwargs)}; or set init_from_teacher=False")


def build(config, network, teacher):
    from train.config import build_objective, build_schedule
    from train.jobs import init_scale

    schedule = build_schedule(config)
    return SFDTrainer(schedule, build_objective(config, schedule), options(config), init_scale(schedule), teacher)


def model_fn(config, network, params, name, nfe):
    """The student at budget ``nfe`` (one it was trained for, for SFD-v) as the samplers' model_fn."""
    del name
    trainer = build(config, network, None)
    if len(trainer.nfes) > 1 and nfe not in trainer.nfes:
        raise ValueError(f"an SFD-v student was trained for nfe in {list(trainer.nfes)} (distill.kwargs.nfe), "
                         f"got sampler nfe {nfe}")
    return trainer.student(network, params, nfe)


register("sfd", DistillMethod(build, model_fn, ("sfd", "euler"), "required", check))

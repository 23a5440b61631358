"""Consistency models as objectives of the one train loop: CD, CT (Song et al. 2023), iCT (Song &
Dhariwal 2023) and multistep consistency distillation (Heek et al. 2024).

Parameterisation (Song et al. 2023, App. C), on the schedule's scale-free variables y = x / alpha,
s = sigma / alpha (s = t on the EDM schedule), s_min = s(t_min):

    f(x, t) = c_skip(s) y + c_out(s) F(c_in(s) y, c_noise(s)),
    c_skip = sd^2 / ((s - s_min)^2 + sd^2),  c_out = sd (s - s_min) / sqrt(sd^2 + s^2),
    c_in = 1 / sqrt(s^2 + sd^2),  c_noise = log(s) / 4,

so f(x, t_min) = y exactly (the boundary condition); f predicts x0 (``predicts="x0"``).
Discretisation: N Karras points s_i = (s_max^(1/7) + i/(N-1) (s_min^(1/7) - s_max^(1/7)))^7,
i = 0..N-1 (descending; index j pairs s_j > s_{j+1}). With x_j = alpha_j x0 + sigma_j z:

* ``cd``: x_{j+1} is one step of a library ODE solver (Heun by default) of the teacher from x_j;
  the target network is an EMA of the student with fixed decay mu; distance L2 (or pseudo-Huber).
  With ``segments`` = T > 1 (multistep consistency, Heek et al. 2024) the grid is cut into T
  segments of equal numbers of steps and both sides are moved by DDIM to their segment's end
  t_e (the last end is the data, alpha = 1, sigma = 0); the loss compares the x0 that the two
  DDIM jumps imply (the difference divided by alpha_e - sigma_e alpha_j / sigma_j). T = 1 is CD.
* ``ct``: x_{j+1} = alpha_{j+1} x0 + sigma_{j+1} z (the same z); N(k) and mu(k) curricula.
* ``ict``: target = stopgrad of the student itself (no EMA), N(k) doubling, j drawn from the
  discretised lognormal, weight 1/(s_j - s_{j+1}), pseudo-Huber distance.

Curricula (k = step, K = ``total_steps`` (default ``train.num_steps``)):
CT (Song et al. 2023, App. C): N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 and
mu(k) = exp(s0 log mu0 / (N(k) - 1)). The paper prints mu(k) = exp(s0 log mu0 / N(k)); the authors'
code (openai/consistency_models, cm/script_util.py, ``create_ema_and_scales_fn``, adaptive /
progressive) divides by the number of *intervals* N(k) - 1 (``scales`` before its ``+ 1``), and
clamps that at 1. We follow the code (it produced the paper's numbers); at k = 0 it gives
mu = mu0^(s0 / (s0 - 1)) = 0.81 for the CIFAR-10 setting instead of the paper's 0.9.
iCT (Song & Dhariwal 2023, Sec. 3.4): N(k) = min(s0 2^floor(k/K'), s1) + 1,
K' = floor(K / (log2 floor(s1/s0) + 1)); p(j) ~ erf((log s_j - P_mean)/(sqrt 2 P_std)) -
erf((log s_{j+1} - P_mean)/(sqrt 2 P_std)); pseudo-Huber c = 0.00054 sqrt(dim).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from samplers import registry
from samplers.checks import check_int, check_number
from samplers.grids import time_grid
from samplers.ode.common import check_choice
from samplers.schedules import Schedule
from train.distill import DistillMethod, kwargs_over, register
from train.distill.teacher import WithTeacher
from train.losses import _per_sample
from train.loop import TrainState, apply_gradients, init_state

RHO = 7.0
# teacher solvers for CD: single-step solvers, whose step i needs nothing but (x, i)
TEACHER_SOLVERS = ("heun", "euler", "ddim", "dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2s",
                   "rk_euler", "rk_midpoint", "rk_heun2", "rk_rk4")
DISTANCES = ("l2", "pseudo_huber")
KINDS = ("cd", "ct", "ict")
# distill.kwargs of each kind, with defaults (the papers' CIFAR-10 values unless noted)
DEFAULTS = {
    "cd": dict(num_points=18, solver="heun", target_decay=0.95, distance="l2", sigma_data=0.5, segments=1,
               huber_c=None),
    "ct": dict(s0=2, s1=150, mu0=0.9, total_steps=None, distance="l2", sigma_data=0.5, huber_c=None),
    "ict": dict(s0=10, s1=1280, p_mean=-1.1, p_std=2.0, total_steps=None, distance="pseudo_huber",
                sigma_data=0.5, huber_c=None),
}


# -- curricula (Song et al. 2023 App. C; Song & Dhariwal 2023 Sec. 3.4) ---------------------------

def ct_num_points(k, total_steps: int, s0: int = 2, s1: int = 150):
    """N(k) of CT: ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 (at least 2); jnp or numpy ``k``."""
    xp = jnp if isinstance(k, jax.Array) else np
    inner = xp.sqrt(k / total_steps * ((s1 + 1) ** 2 - s0**2) + s0**2)
    return xp.maximum(xp.ceil(inner - 1), 1).astype(xp.int32) + 1


def ct_target_decay(num_points, s0: int = 2, mu0: float = 0.9):
    """mu(k) = exp(s0 log mu0 / (N(k) - 1)) (the authors' code; see the module docstring)."""
    xp = jnp if isinstance(num_points, jax.Array) else np
    return xp.exp(s0 * math.log(mu0) / (num_points - 1))


def ict_num_points(k, total_steps: int, s0: int = 10, s1: int = 1280):
    """N(k) of iCT: min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1))."""
    xp = jnp if isinstance(k, jax.Array) else np
    k_prime = max(1, math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1)))
    return xp.minimum(s0 * 2 ** xp.floor(k / k_prime), s1).astype(xp.int32) + 1


def karras_levels(num_points, size: int, s_min: float, s_max: float):
    """s_i, i = 0..size-1, of the N-point Karras grid (descending; entries i >= N repeat s_min)."""
    i = jnp.minimum(jnp.arange(size), num_points - 1).astype(jnp.float32)
    lo, hi = s_min ** (1 / RHO), s_max ** (1 / RHO)
    return (hi + i / (num_points - 1).astype(jnp.float32) * (lo - hi)) ** RHO


def ict_index_logits(levels, num_points, p_mean: float = -1.1, p_std: float = 2.0):
    """log p(j) of iCT's discretised lognormal over the pairs (s_j, s_{j+1}), j < N - 1 (-inf beyond)."""
    cdf = jax.scipy.special.erf((jnp.log(levels) - p_mean) / (math.sqrt(2.0) * p_std))
    mass = cdf[:-1] - cdf[1:]
    valid = jnp.arange(mass.shape[0]) < num_points - 1
    return jnp.where(valid & (mass > 0), jnp.log(jnp.where(mass > 0, mass, 1.0)), -jnp.inf)


# -- the consistency function ------------------------------------------------------------------

def cm_coefficients(s, s_min: float, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of Song et al. (2023), App. C, at scale-free noise level s."""
    sd2 = sigma_data**2
    c_skip = sd2 / ((s - s_min) ** 2 + sd2)
    c_out = sigma_data * (s - s_min) * jax.lax.rsqrt(sd2 + s * s)
    return c_skip, c_out, jax.lax.rsqrt(s * s + sd2), 0.25 * jnp.log(s)


def consistency_fn(apply: Callable, schedule: Schedule, s_min: float, sigma_data: float) -> Callable:
    """f(x, t) -> x0 from the raw network ``apply(x, c_noise)`` (t scalar or per sample)."""

    def f(x, t):
        tb = _per_sample(t, x)
        a = schedule.alpha(tb)
        s = schedule.sigma(tb) / a
        y = x / a
        c_skip, c_out, c_in, c_noise = cm_coefficients(s, s_min, sigma_data)
        c_noise = jnp.broadcast_to(jnp.reshape(c_noise, (-1,)), (x.shape[0],))
        return c_skip * y + c_out * apply(c_in * y, c_noise)

    return f


def pseudo_huber(diff, c: float):
    """sqrt(|d|^2 + c^2) - c per sample, on the whole flattened vector (Song & Dhariwal 2023)."""
    sq = jnp.sum(jnp.square(diff.reshape(diff.shape[0], -1)), axis=1)
    return jnp.sqrt(sq + c * c) - c


@struct.dataclass
class TargetState(TrainState):
    """The loop state plus the target network of CD / CT (an EMA of the student with decay mu)."""

    target: Any = None


@dataclasses.dataclass(frozen=True, eq=False)
class ConsistencyTrainer(WithTeacher):
    """A loop ``Method`` (``train.loop.ObjectiveMethod``) for ``kind`` in ``KINDS``."""

    kind: str
    schedule: Schedule
    opts: dict
    total_steps: int
    teacher: Any = None  # train.distill.Teacher (cd only)

    @property
    def s_range(self) -> tuple[float, float]:
        sch = self.schedule
        s = lambda t: float(sch.sigma(np.float64(t)) / sch.alpha(np.float64(t)))
        return s(sch.t_min), s(sch.t_max)

    def f(self, network, params) -> Callable:
        return consistency_fn(lambda x, c: network.apply(params, x, c), self.schedule, self.s_range[0],
                              self.opts["sigma_data"])

    def init_state(self, network, tx, key):
        base = init_state(network, tx, key)
        if self.kind == "ict":
            return base
        target = jax.tree_util.tree_map(jnp.copy, base.params)
        return TargetState(base.step, base.params, base.ema, base.opt_state, target)

    # -- the discretisation at step k ------------------------------------------------------------
    def _curriculum(self, k):
        """(N, size, mu): the number of points (traced for ct/ict), a static bound, the target decay."""
        o = self.opts
        if self.kind == "cd":
            return jnp.int32(o["num_points"]), o["num_points"], jnp.float32(o["target_decay"])
        if self.kind == "ct":
            n = ct_num_points(k, self.total_steps, o["s0"], o["s1"])
            return n, o["s1"] + 1, ct_target_decay(n, o["s0"], o["mu0"]).astype(jnp.float32)
        return ict_num_points(k, self.total_steps, o["s0"], o["s1"]), o["s1"] + 1, jnp.float32(0.0)

    def _teacher_step(self):
        """x_j -> x_{j+1}: one step of the teacher's solver on the fixed CD grid, per-sample j."""
        o = self.opts
        grid = time_grid(self.schedule, o["num_points"] - 1, "karras")
        smp = registry.SAMPLERS[o["solver"]].builder(self.schedule, grid, self.teacher.predicts)

        def step(x, j, params):
            model = self.teacher.model_fn(params)

            def one(xi, ji):
                state = smp.init(xi[None]).replace(i=ji)
                return smp.step(state, jax.random.PRNGKey(0), model).x[0]

            return jax.vmap(one)(x, j)

        return step, grid

    def train_step(self, network, tx, decay: float, warmup: bool = True) -> Callable:
        o, sch = self.opts, self.schedule
        s_min, s_max = self.s_range
        c = o["huber_c"]
        distance = o["distance"]
        if self.kind == "cd":
            teacher_step, grid = self._teacher_step()
            s_table = jnp.asarray(grid.sigma / grid.alpha, jnp.float32)

        def dist(diff, dim):
            if distance == "l2":
                return jnp.mean(jnp.square(diff.reshape(diff.shape[0], -1)), axis=1)
            return pseudo_huber(diff, 0.00054 * math.sqrt(dim) if c is None else c)

        def step(state, batch, key, frozen):
            x0 = batch
            b, dim = x0.shape[0], int(np.prod(x0.shape[1:]))
            n, size, mu = self._curriculum(state.step)
            kj, kz = jax.random.split(key)
            if self.kind == "cd":
                levels = s_table
            else:
                levels = karras_levels(n, size, s_min, s_max)
            if self.kind == "ict":
                j = jax.random.categorical(kj, ict_index_logits(levels, n, o["p_mean"], o["p_std"]), shape=(b,))
            else:
                j = jnp.minimum(jnp.floor(jax.random.uniform(kj, (b,)) * (n - 1)), n - 2).astype(jnp.int32)
            s_j, s_n = levels[j], levels[j + 1]
            t_j, t_n = sch.t_from_lambda(-jnp.log(s_j)), sch.t_from_lambda(-jnp.log(s_n))
            z = jax.random.normal(kz, x0.shape, x0.dtype)
            a_j = _per_sample(sch.alpha(t_j), x0)
            x_j = a_j * (x0 + _per_sample(s_j, x0) * z)
            if self.kind == "cd":
                x_n = teacher_step(x_j, j, frozen)
            else:
                x_n = _per_sample(sch.alpha(t_n), x0) * (x0 + _per_sample(s_n, x0) * z)
            target_params = state.params if self.kind == "ict" else state.target
            f_target = jax.lax.stop_gradient(self.f(network, target_params)(x_n, t_n))
            if self.kind == "cd" and o["segments"] > 1:
                # both sides by DDIM to the segment end e (index (j // m + 1) m; the last end is the data)
                m = (o["num_points"] - 1) // o["segments"]
                e = (j // m + 1) * m
                last = e >= o["num_points"] - 1
                s_e = jnp.where(last, 0.0, levels[jnp.minimum(e, o["num_points"] - 1)])
                y_j, y_n = x_j / a_j, x_n / _per_sample(sch.alpha(t_n), x0)
                ddim = lambda y, x0_hat, s_from: x0_hat + _per_sample(s_e / s_from, x0) * (y - x0_hat)
                gain = _per_sample(1.0 - s_e / s_j, x0)  # d(y_e)/d(x0_hat) of the student's jump
                target = ddim(y_n, f_target, s_n)
            weight = 1.0 / (s_j - s_n) if self.kind == "ict" else jnp.ones_like(s_j)

            def loss_fn(params):
                f_student = self.f(network, params)(x_j, t_j)
                if self.kind == "cd" and o["segments"] > 1:
                    diff = (ddim(y_j, f_student, s_j) - target) / gain
                else:
                    diff = f_student - f_target
                return jnp.mean(weight * dist(diff, dim))

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            new = apply_gradients(state, grads, tx, decay, warmup)
            if self.kind != "ict":
                tgt = jax.tree_util.tree_map(lambda p, q: mu * p + (1.0 - mu) * q, state.target, new.params)
                new = new.replace(target=jax.lax.stop_gradient(tgt))
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads), "num_points": n, "target_decay": mu}

        return step


# -- registration ------------------------------------------------------------------------------------

def options(config, kind: str) -> dict:
    """``distill.kwargs`` merged over the defaults of ``kind``; a ValueError names a bad field."""
    return kwargs_over(config, DEFAULTS[kind])


def _check(kind: str) -> Callable:
    def check(config) -> None:
        from train.config import build_schedule

        o = options(config, kind)
        if config.predicts != "x0":
            raise ValueError(f"a consistency model predicts x0: predicts must be 'x0', got {config.predicts!r}")
        sch = build_schedule(config)
        if not float(sch.alpha(np.float64(sch.t_max))) > 0.0 or not float(sch.sigma(np.float64(sch.t_min))) > 0.0:
            raise ValueError(f"a consistency model needs alpha > 0 and sigma > 0 on the whole schedule range: "
                             f"schedule {sch.name!r} fails at an end")
        check_number("distill.kwargs.sigma_data", o["sigma_data"], 0.0, open_lo=True)
        check_choice("distill.kwargs.distance", o["distance"], DISTANCES)
        if o["huber_c"] is not None:
            check_number("distill.kwargs.huber_c", o["huber_c"], 0.0, open_lo=True)
        if kind == "cd":
            check_int("distill.kwargs.num_points", o["num_points"], 2)
            check_choice("distill.kwargs.solver", o["solver"], TEACHER_SOLVERS)
            check_number("distill.kwargs.target_decay", o["target_decay"], 0.0, 1.0)
            check_int("distill.kwargs.segments", o["segments"], 1)
            if (o["num_points"] - 1) % o["segments"]:
                raise ValueError(f"distill.kwargs.segments={o['segments']} must divide the num_points - 1 = "
                                 f"{o['num_points'] - 1} steps of the grid")
            teacher_predicts = config.predicts if config.distill.teacher == "analytic" else None
            if teacher_predicts is not None:
                grid = time_grid(sch, o["num_points"] - 1, "karras")
                registry.SAMPLERS[o["solver"]].builder(sch, grid, teacher_predicts)
        else:
            check_int("distill.kwargs.s0", o["s0"], 1)
            check_int("distill.kwargs.s1", o["s1"], o["s0"])
            if o["total_steps"] is not None:
                check_int("distill.kwargs.total_steps", o["total_steps"], 1)
        if kind == "ct":
            check_number("distill.kwargs.mu0", o["mu0"], 0.0, 1.0, open_lo=True)
        if kind == "ict":
            check_number("distill.kwargs.p_std", o["p_std"], 0.0, open_lo=True)
            check_number("distill.kwargs.p_mean", o["p_mean"])

    return check


def _build(kind: str) -> Callable:
    def build(config, network, teacher):
        from train.config import build_schedule

        o = options(config, kind)
        total = o.get("total_steps") or config.train.num_steps
        return ConsistencyTrainer(kind, build_schedule(config), o, int(total), teacher)

    return build


def _model_fn(kind: str) -> Callable:
    def model_fn(config, network, params, name, nfe):
        del name, nfe  # f is the same for every sampler and budget
        return _build(kind)(config, network, None).f(network, params)

    return model_fn


for _kind in KINDS:
    register(_kind, DistillMethod(_build(_kind), _model_fn(_kind), ("consistency", "ddim"),
                                  "required" if _kind == "cd" else "none", _check(_kind)))

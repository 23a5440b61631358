"""Samplers by name, built for a model-call budget: what ``launch.py`` and the
benchmarks use. ``build(name, schedule, nfe, ...)`` picks the number of grid
steps that spends exactly ``nfe`` model calls (or the nearest below it)."""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from samplers.core import Sampler
from samplers.discrete import dfm, uniform
from samplers.discrete.first_hitting import first_hitting
from samplers.discrete.masked import ancestral
from samplers.discrete.remask import remdm
from samplers.from_diffusers import singlestep_groups, singlestep_order_list
from samplers.grids import DISCRETE_SPACINGS, TimeGrid, time_grid
from samplers.ode.ddim import ddim
from samplers.ode.dpm_solver import dpm_solver, dpm_solver_fast_grid, dpm_solver_pp
from samplers.ode.dpm_solver_adaptive import dpm_solver_adaptive
from samplers.ode.dpm_solver_v3 import dpm_solver_v3
from samplers.ode.deis import deis, deis_rk
from samplers.ode.consistency import consistency
from samplers.ode.ipndm import ipndm
from samplers.ode.rk import TABLEAUX, euler, rk
from samplers.ode.lsd import lsd
from samplers.ode.sfd import sfd
from samplers.ode.shortcut import shortcut
from samplers.ode.unipc import unipc
from samplers.schedules import Schedule, VPDiscrete
from samplers.sde.ancestral import ddim_eta, ddpm
from samplers.sde.edm_stochastic import edm_stochastic
from samplers.sde.euler_maruyama import euler_maruyama
from samplers.sde.momentum import dpm_solver_pp_hb, plms_momentum
from samplers.sde.pc import predictor_corrector
from samplers.sde.sde_dpm import sde_dpm_solver
from samplers.sde.time_shift import time_shift


class Entry(NamedTuple):
    builder: Callable[..., Sampler]  # builder(schedule, grid, predicts, **options)
    steps: Callable[[int, bool], int]  # (nfe, final_zero) -> number of grid steps
    spacing: str  # default spacing
    # optional plan(schedule, nfe, spacing, t_start, t_end) -> (grid, builder options), for
    # samplers whose grid is not "so many steps in some spacing" (DPM-Solver-fast)
    plan: Callable[..., tuple[TimeGrid, dict]] | None = None


def _per_call(k: int) -> Callable[[int, bool], int]:
    return lambda nfe, final_zero: nfe // k


def _singlestep(k: int) -> Callable[[int, bool], int]:
    """k calls a step; a final step to sigma = 0 is first order (one call)."""
    return lambda nfe, final_zero: (nfe - 1) // k + 1 if final_zero else nfe // k


# Longest log-SNR step h = lambda_t - lambda_s a singlestep interval of order > 1 may take (``cap_orders``).
# Argument (no benchmark tuning): DPM-Solver-k's error bound expands the model output in lambda to order k
# (Lu et al. 2022a, Thm 3.2). For Gaussian data N(mu, v) the eps-prediction along the PF-ODE carries the
# factor 1 / (1 + v e^(2 lambda)), with complex poles at lambda = (-log v +- i pi) / 2, so its Taylor series in
# lambda converges only within pi/2 of lambda = -log(v)/2: for a step longer than pi/2 there is a data
# variance for which the higher-order terms diverge, and a first-order (DDIM) step is then the safe choice.
H_MAX = float(np.pi / 2)


def cap_orders(schedule: Schedule, grid: TimeGrid, orders, h_max: float) -> tuple[TimeGrid, list[int]]:
    """Lower to order 1 every singlestep interval of order p > 1 whose log-SNR step exceeds ``h_max``,
    keeping the calls exact: the interval becomes p first-order steps at lambda_s + j h / p (the stage
    points of DPM-Solver-2/3, Lu et al. 2022a Alg. 1-2), as DPM-Solver-fast lowers its orders. Returns
    the (refined) grid and per-interval orders for ``dpm_solver(..., orders=...)``."""
    cols = {k: [np.asarray(getattr(grid, k)[:1])] for k in ("t", "alpha", "sigma", "lam")}
    out = []
    for i, p in enumerate(int(p) for p in orders):
        h = grid.lam[i + 1] - grid.lam[i]
        if p > 1 and np.isfinite(h) and h > h_max:
            t = np.asarray(schedule.t_from_lambda(grid.lam[i] + np.arange(1, p) * h / p), np.float64)
            for k, v in zip(cols, (t, schedule.alpha(t), schedule.sigma(t), schedule.lambda_(t))):
                cols[k].append(np.asarray(v, np.float64))
            out += [1] * p
        else:
            out.append(p)
        for k in cols:
            cols[k].append(np.asarray(getattr(grid, k)[i + 1:i + 2]))
    return TimeGrid(**{k: np.concatenate(v) for k, v in cols.items()}), out


def cap_groups(grid: TimeGrid, groups, h_max: float) -> list[int]:
    """``cap_orders`` for intervals whose stages sit on the grid (``dpm_solver(..., stages="grid")``: an interval
    of order p spans p grid steps): one spanning a log-SNR step over ``h_max`` becomes p first-order intervals on
    the same points (calls unchanged)."""
    out, j = [], 0
    for p in (int(p) for p in groups):
        h = grid.lam[j + p] - grid.lam[j]
        out += [1] * p if p > 1 and np.isfinite(h) and h > h_max else [p]
        j += p
    return out


def _dpm_solver_fast_plan(schedule, nfe, spacing, t_start, t_end):
    grid, orders = cap_orders(schedule, *dpm_solver_fast_grid(schedule, nfe, 3, spacing, t_start, t_end), H_MAX)
    return grid, {"orders": orders}


def _adaptive(schedule, grid, predicts, order=3, **options):
    """Only the grid's end points are used; the budget bounds the attempted steps."""
    if grid.final_zero:
        raise ValueError("dpm_solver_adaptive needs final=None: it ends at t_end, not at sigma = 0")
    return dpm_solver_adaptive(schedule, predicts, order=order, t_start=float(grid.t[0]), t_end=float(grid.t[-1]),
                               max_steps=max(1, grid.num_steps // order), **options)


# Least budget of the registry's dpm_solver_adaptive: its calls are set by its tolerance, the budget only caps them,
# and a capped run returns the state where it stopped (``state.done`` False). With the reference code's tolerances
# it took 69-94 calls to reach the end on the benchmark mixtures (orders 2 and 3; RMS 9e-4 to 6e-3), and every cap
# of 50 or fewer stopped it early (2.5-34x DDIM's error at the same calls).
ADAPTIVE_MIN_NFE = 100
# Least budgets: name -> (the schedule class it applies on, None for every schedule; least nfe, None for no budget
# at all; why). On vp_discrete, for the solvers that exceed 2x DDIM's error below it and have no order to lower
# (RMS vs the exact PF-ODE at the calls spent, DDIM on its default grid; mixtures dim 32 / 6 components / seed 0
# (the bench goal's), dim 8 / 4 / 0 (the bench default) and dim 8 / 6 / 1, 256 draws each: README "Small-budget
# robustness").
MIN_NFE = {
    "dpm_solver_adaptive": (None, ADAPTIVE_MIN_NFE,
                            "its tolerance sets its calls (69-94 on the benchmark mixtures) and a smaller cap stops it "
                            "before the end; for a fixed budget use a fixed-step solver, or build "
                            "ode.dpm_solver_adaptive.dpm_solver_adaptive(...) with your own tolerances and max_steps"),
    "rk_euler": (VPDiscrete, None,
                 "explicit Euler in t is 2.1-5.3x DDIM's error at 8 and 11-50 calls on the dim-8 benchmark mixture; "
                 "DDIM is the first-order step exact in the schedule's noise levels: use 'ddim'"),
    "rk_heun2": (VPDiscrete, 8, "one to three steps in t across the whole DDPM range are 2.2x DDIM's error at 4-5 "
                                "calls (2.9x at 4-7 with 64 draws) on the dim-8 benchmark mixture"),
    "rk_midpoint": (VPDiscrete, 8, "one to three steps in t across the whole DDPM range are 2.4x DDIM's error at 4-5 "
                                   "calls (3.1x at 4-7 with 64 draws) on the dim-8 benchmark mixture"),
    "rk_rk4": (VPDiscrete, 8, "one RK4 step across the whole DDPM range is 1.8x DDIM's error at 4-7 calls (2.2x with "
                              "64 draws) on the dim-8 benchmark mixture"),
    "ipndm": (VPDiscrete, 3, "at 2 calls its second-order step spans half the log-SNR range: 2.1x DDIM's error on "
                             "the dim-32 benchmark mixture"),
}


def _check_budget(name: str, schedule: Schedule, nfe: int) -> None:
    """The ValueError of ``MIN_NFE`` for ``name`` at ``nfe`` calls on ``schedule``, if any."""
    if name not in MIN_NFE:
        return
    kind, least, why = MIN_NFE[name]
    if kind is not None and not isinstance(schedule, kind):
        return
    if least is None:
        raise ValueError(f"sampler name {name!r} is not offered on schedule {schedule.name!r}: {why}")
    if nfe < least:
        where = "" if kind is None else f" on schedule {schedule.name!r}"
        raise ValueError(f"nfe must be >= {least} for sampler {name!r}{where}, got {nfe}: {why}")


def _fixed(builder, *args, **fixed):
    return lambda schedule, grid, predicts, **kw: builder(schedule, grid, *args, predicts, **fixed, **kw)


SAMPLERS: dict[str, Entry] = {
    "ddim": Entry(ddim, _per_call(1), "logsnr"),
    "euler": Entry(euler, _per_call(1), "karras"),
    # Karras's Heun in (y, s = sigma/alpha) is rho-RK2 (bit for bit), whose steps SINGLESTEP_ORDER can lower
    "heun": Entry(_fixed(deis_rk, order=2), _singlestep(2), "karras"),
    "dpm_solver_1": Entry(_fixed(dpm_solver, 1), _per_call(1), "logsnr"),
    "dpm_solver_2": Entry(_fixed(dpm_solver, 2), _singlestep(2), "logsnr"),
    "dpm_solver_3": Entry(_fixed(dpm_solver, 3), _singlestep(3), "logsnr"),
    "dpm_solver_fast": Entry(_fixed(dpm_solver, 3), _per_call(1), "logsnr", plan=_dpm_solver_fast_plan),
    "dpm_solver_adaptive": Entry(_adaptive, _per_call(1), "logsnr"),
    "dpm_solver_pp_2m": Entry(_fixed(dpm_solver_pp, 2, method="multistep"), _per_call(1), "logsnr"),
    "dpm_solver_pp_3m": Entry(_fixed(dpm_solver_pp, 3, method="multistep"), _per_call(1), "logsnr"),
    "dpm_solver_pp_3m_taylor": Entry(_fixed(dpm_solver_pp, 3, method="multistep", third_order="taylor"),
                                     _per_call(1), "logsnr"),
    "dpm_solver_pp_2s": Entry(_fixed(dpm_solver_pp, 2, method="singlestep"), _singlestep(2), "logsnr"),
    "unipc": Entry(unipc, _per_call(1), "logsnr"),  # bh2, order 2 (diffusers' default); order=3 via options
    "unipc_3": Entry(_fixed(unipc, order=3), _per_call(1), "logsnr"),
    "unipc_bh1": Entry(_fixed(unipc, variant="bh1"), _per_call(1), "logsnr"),
    "unip": Entry(_fixed(unipc, corrector=False), _per_call(1), "logsnr"),
    "deis": Entry(deis, _per_call(1), "logsnr"),  # tAB order 2; order=3 via options
    "deis_3": Entry(_fixed(deis, order=3), _per_call(1), "logsnr"),
    "deis_rk": Entry(deis_rk, _singlestep(3), "logsnr"),  # DEIS rho-RK, Kutta third order (capped: SINGLESTEP_ORDER)
    "ipndm": Entry(ipndm, _per_call(1), "logsnr"),  # order 4 (Zhang & Chen 2023); order=1..3 via options
    # few-step students of train.distill: consistency models (f(x, t) -> x0) and shortcut models
    "consistency": Entry(consistency, _per_call(1), "karras"),
    "shortcut": Entry(shortcut, _per_call(1), "uniform"),
    "sfd": Entry(sfd, lambda nfe, final_zero: nfe + 1, "karras"),  # SFD students: Euler, analytical 1st step
    # LSD students: DDIM's eps step scaled per step (c = 1 here; the learnt c and times: DistillMethod.sampler)
    "lsd": Entry(lsd, _per_call(1), "logsnr"),
    # DPM-Solver-v3: needs the statistics artefact of dpm_solver_v3.model_statistics (stats=...); time-uniform
    # grid as the reference code's default (skip_type="time_uniform")
    "dpm_solver_v3": Entry(dpm_solver_v3, _per_call(1), "uniform"),
    # stochastic samplers (samplers/sde)
    "euler_maruyama": Entry(euler_maruyama, _per_call(1), "uniform"),
    "ddpm": Entry(ddpm, _per_call(1), "logsnr"),
    "ddim_eta": Entry(ddim_eta, _per_call(1), "logsnr"),  # eta option, default 1.0
    "sde_dpm_solver_1": Entry(_fixed(sde_dpm_solver, order=1, algorithm="dpmsolver"), _per_call(1), "logsnr"),
    "sde_dpm_solver_2": Entry(_fixed(sde_dpm_solver, order=2, algorithm="dpmsolver"), _per_call(1), "logsnr"),
    "sde_dpm_solver_pp_2m": Entry(_fixed(sde_dpm_solver, order=2, algorithm="dpmsolver++"), _per_call(1), "logsnr"),
    # EDM's ImageNet-64 churn setting; the builder's own defaults (no churn) are deterministic Heun
    "edm_stochastic": Entry(_fixed(edm_stochastic, s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
                            _singlestep(2), "karras"),
    "pc": Entry(predictor_corrector, _per_call(2), "logsnr"),  # one Langevin corrector step (the default) + predictor
    "ts_ddim": Entry(time_shift, _per_call(1), "logsnr"),
    "ts_ddpm": Entry(_fixed(time_shift, eta=1.0), _per_call(1), "logsnr"),
    "plms_ghvb": Entry(plms_momentum, _per_call(1), "uniform"),  # order 2, beta 0.8
    "plms_hb": Entry(_fixed(plms_momentum, method="hb"), _per_call(1), "uniform"),
    "dpm_solver_pp_2m_hb": Entry(dpm_solver_pp_hb, _per_call(1), "logsnr"),
}
# singlestep solvers whose intervals ``plan`` caps at H_MAX (``cap_orders``): their order
# (Heun's error in (y, s) is not a series in lambda, but the same cap measured to bound its small-budget error:
# uncapped, 180x DDIM's at 2 calls and 2.6-18x at 4-15 calls on the benchmark mixtures; capped, at most 2x)
SINGLESTEP_ORDER = {"dpm_solver_2": 2, "dpm_solver_3": 3, "dpm_solver_pp_2s": 2, "heun": 2, "deis_rk": 3}
# singlestep DPM-Solvers that, on a discrete spacing, follow diffusers' DPMSolverSinglestepScheduler: one model
# call per grid point (nfe points), intervals of orders [1, 2, 3, 1, 2, 3, ...] with their stages on the grid
# (``from_diffusers.singlestep_order_list``), capped by ``cap_groups``. On the lambda-stage grid of nfe / order
# points instead, the last model call sits at t ~ 1000 order / nfe before the first-order jump to sigma = 0
# (DPM-Solver-3 on the dim-8 benchmark mixture: 2.97x DDIM's error at 6-8 calls, 4 of them spent, 1.8-1.98x at 9-50)
GRID_STAGES = ("dpm_solver_2", "dpm_solver_3", "dpm_solver_pp_2s")
for _m in TABLEAUX:
    SAMPLERS[f"rk_{_m}"] = Entry(_fixed(rk, method=_m), _per_call(len(TABLEAUX[_m][1])), "uniform")


# Default spacing on the DDPM-discrete schedule (vp_discrete), chosen by measurement (bench/ode_accuracy.py
# mixtures, RMS vs the exact PF-ODE from t = 999 to sigma = 0; table in the README's "Fast ODE sampling"):
# diffusers' ``linspace`` grid, whose last model call is at t ~ 1000/N and not at t = 0 (it ends at sigma = 0
# also with final=None, as diffusers does), is the best or within 2x of the best spacing at 5 and 10 calls
# for these solvers, where logSNR is up to 5x worse
# (DPM-Solver++(3M), 32-dim mixture: 0.467 / 0.222 at 5 / 10 calls vs 1.63 / 0.286 on logSNR, 0.80 / 0.51 for
# logSNR DDIM); at 20-50 calls logSNR or quadratic is better again but every error is then below 0.04.
# Any other spacing stays available by name. UniPC-bh1 and DPM-Solver++(3M, Taylor) join for robustness: on
# logSNR their 3-6 steps are longer than ``H_MAX`` in log-SNR and their error reaches 2.2-3.2x logSNR DDIM's at
# 4-7 calls; on linspace it stays within 1.8x at every budget (tests/test_fastode_robust.py).
# The singlestep DPM-Solvers, Heun, Euler, DPM-Solver-1 and UniP join as well (diffusers' own default there, and
# measured: on logSNR, DPM-Solver-1/2/3 and ++(2S) are 2.6-5.0x linspace DDIM's error at 9-12 and 50 calls on
# tests/test_fastode_robust.py's second mixture, Karras-spaced Heun 2.85x at 4-5 calls on the dim-8 benchmark
# mixture; on linspace all of them stay within 1.84x at every NFE 1-12, 15, 20, ..., 50 on three mixtures: README
# "Small-budget robustness"). DEIS rho-RK takes time-uniform points: on logSNR it was 2.16x DDIM's error at 18 calls
# on the dim-8 benchmark mixture (256 draws), on uniform 1.58x at most over NFE 3-50 on the three mixtures (on
# linspace 2.97x at 4-6 calls).
DISCRETE_SPACING = {**{name: "linspace" for name in ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc", "unipc_3",
                                                     "deis", "unipc_bh1", "dpm_solver_pp_3m_taylor", "dpm_solver_1",
                                                     "unip", "euler", "heun") + GRID_STAGES}, "deis_rk": "uniform"}


def default_spacing(name: str, schedule: Schedule, end_points: bool = False) -> str:
    """The spacing ``plan`` uses for ``name`` on ``schedule`` when none is given (the entry's own when
    ``end_points`` are given: diffusers' integer spacings always span the whole schedule)."""
    if isinstance(schedule, VPDiscrete) and name in DISCRETE_SPACING and not end_points:
        return DISCRETE_SPACING[name]
    return SAMPLERS[name].spacing


# samplers of one kind of model only (consistency functions, step-size-conditioned shortcut models, SFD and LSD
# students, train.distill):
# built by name like the others but left out of ``names()``, the samplers of any model
MODEL_SPECIFIC = ("consistency", "shortcut", "sfd", "lsd", "dpm_solver_v3")


def names(model_specific: bool = False) -> list[str]:
    """The samplers of any model (and, with ``model_specific``, those of ``MODEL_SPECIFIC`` too)."""
    return sorted(n for n in SAMPLERS if model_specific or n not in MODEL_SPECIFIC)


def plan(name: str, schedule: Schedule, nfe: int, *, spacing: str | None = None, final: str | None = None,
         t_start: float | None = None, t_end: float | None = None) -> tuple[TimeGrid, dict]:
    """The time grid (and grid-dependent builder options) sampler ``name`` uses for ``nfe`` calls."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler name must be one of {names(model_specific=True)}, got {name!r}")
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    _check_budget(name, schedule, nfe)
    entry = SAMPLERS[name]
    if entry.plan is not None:
        if final is not None:
            raise ValueError(f"sampler {name!r} takes final=None only, got {final!r}")
        return entry.plan(schedule, nfe, spacing or entry.spacing, t_start, t_end)
    spacing = spacing or default_spacing(name, schedule, t_start is not None or t_end is not None)
    discrete = spacing in DISCRETE_SPACINGS and final != "last"  # these grids end with a step to sigma = 0
    if name in GRID_STAGES and discrete:
        g = time_grid(schedule, nfe, spacing, final=final, t_start=t_start, t_end=t_end)
        groups = singlestep_groups(singlestep_order_list(SINGLESTEP_ORDER[name], nfe, True, True))
        return g, {"orders": cap_groups(g, groups, H_MAX), "stages": "grid"}
    steps = entry.steps(nfe, final == "zero" or discrete)
    if steps < 1:
        raise ValueError(f"nfe={nfe} is too small for sampler {name!r}")
    g = time_grid(schedule, steps, spacing, final=final, t_start=t_start, t_end=t_end)
    if name not in SINGLESTEP_ORDER:
        return g, {}
    orders = [SINGLESTEP_ORDER[name]] * steps
    if g.final_zero:
        orders[-1] = 1
    g, orders = cap_orders(schedule, g, orders, H_MAX)
    return g, {"orders": orders}


def grid(name: str, schedule: Schedule, nfe: int, **kwargs) -> TimeGrid:
    """The time grid of ``build(name, schedule, nfe, **kwargs)`` (its end points define the exact answer)."""
    return plan(name, schedule, nfe, **kwargs)[0]


def build(name: str, schedule: Schedule, nfe: int, predicts: str = "eps", *, spacing: str | None = None,
          final: str | None = None, t_start: float | None = None, t_end: float | None = None,
          **options) -> Sampler:
    """Build sampler ``name`` spending ``nfe`` model calls on ``schedule``."""
    g, planned = plan(name, schedule, nfe, spacing=spacing, final=final, t_start=t_start, t_end=t_end)
    if predicts in ("eps", "score") and g.alpha[0] == 0.0:  # x = sigma eps there: no information on x0
        raise ValueError(f"predicts={predicts!r} is singular at the grid's first time t={g.t[0]:g}, where "
                         f"alpha = 0 ({schedule.name} schedule); predict 'velocity' or 'x0', or give t_start < "
                         f"{g.t[0]:g}")
    return SAMPLERS[name].builder(schedule, g, predicts, **planned, **options)


# -- discrete diffusion (samplers/discrete): model_fn(x (B, L) ids, t) -> x0 logits (B, L, V) -------------------

def _first_hitting(vocab_size: int, length: int, nfe: int, schedule):
    """Exact, one token per call: only ``nfe`` = L (an all-masked start)."""
    if nfe != length:
        raise ValueError(f"nfe must equal the sequence length {length} for sampler 'first_hitting' (one token per "
                         f"model call), got {nfe}")
    return first_hitting(vocab_size, length, schedule)


def _masked(**options):
    return lambda vocab_size, length, nfe, schedule: ancestral(vocab_size, nfe, schedule, **options)


def _remdm(nfe_per_step: int = 1, **options):
    """ReMDM; with a corrector step after every predictor step but the last, N steps cost 2 N - 1 calls."""
    def build(vocab_size, length, nfe, schedule):
        steps = (nfe + 1) // 2 if nfe_per_step == 2 else nfe
        return remdm(vocab_size, steps, schedule, **options)
    return build


def _steps(builder, **options):
    """A sampler of one model call a step: builder(vocab_size, nfe, schedule=..., **options)."""
    return lambda vocab_size, length, nfe, schedule: builder(vocab_size, nfe, schedule=schedule, **options)


class DiscreteEntry(NamedTuple):
    noise: str  # "mask": a masked model from all-masked tokens; "uniform": a uniform-noise model from uniform tokens
    builder: Callable[..., Sampler]  # builder(vocab_size, length, nfe, schedule) -> Sampler of nfe calls (or fewer)


# Discrete samplers by name. Left out: the prediction cache (valid only for models that ignore t) and block
# diffusion (it calls the model on the prefix only: a model of variable length).
DISCRETE_SAMPLERS: dict[str, DiscreteEntry] = {
    "masked": DiscreteEntry("mask", _masked()),  # MDLM / MD4 ancestral
    "masked_confidence": DiscreteEntry("mask", _masked(order="confidence")),
    "masked_margin": DiscreteEntry("mask", _masked(order="margin")),
    "pc_sampler": DiscreteEntry("mask", _masked(order="pc")),  # PC-Sampler, uniform background, lambda 0.25
    "first_hitting": DiscreteEntry("mask", _first_hitting),
    "remdm_cap": DiscreteEntry("mask", _remdm(strategy="cap")),  # eta 0.02
    "remdm_loop": DiscreteEntry("mask", _remdm(strategy="loop")),  # eta 0.02 on [0.05, 0.55]
    "remdm_pc": DiscreteEntry("mask", _remdm(2, eta=0.0, corrector_steps=1, corrector_eta=0.3)),
    "dfm_euler": DiscreteEntry("mask", _steps(dfm.euler, source="mask")),  # discrete flow matching, mask source
    "uniform_analytic": DiscreteEntry("uniform", _steps(uniform.analytic)),  # D3PM posterior step
    "uniform_euler": DiscreteEntry("uniform", _steps(uniform.euler)),  # needs alpha(1) > 0 (log-linear)
    "uniform_tau_leaping": DiscreteEntry("uniform", _steps(uniform.tau_leaping)),  # likewise
    "dfm_uniform": DiscreteEntry("uniform", _steps(dfm.euler, source="uniform")),
}
NOISES = ("mask", "uniform")


def discrete_names(noise: str | None = None) -> list[str]:
    """The discrete samplers (of the models of ``noise``, one of ``NOISES``, if given)."""
    return sorted(n for n, e in DISCRETE_SAMPLERS.items() if noise is None or e.noise == noise)


def build_discrete(name: str, vocab_size: int, length: int, nfe: int, schedule="linear") -> Sampler:
    """Discrete sampler ``name`` for sequences of ``length`` tokens of a ``vocab_size`` vocabulary (a masked
    model's mask id is ``vocab_size``), spending ``nfe`` model calls on the ``schedule`` (a name or a
    MaskSchedule, samplers/discrete/schedules.py)."""
    if name not in DISCRETE_SAMPLERS:
        raise ValueError(f"sampler name must be one of {discrete_names()}, got {name!r}")
    if not isinstance(nfe, (int, np.integer)) or isinstance(nfe, bool) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    return DISCRETE_SAMPLERS[name].builder(vocab_size, length, int(nfe), schedule)

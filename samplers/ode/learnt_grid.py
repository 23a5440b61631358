"""Learnt time grids for few-step multistep solvers (in the spirit of LD3, Tong et al. 2025,
"Learning to Discretize Denoising Diffusion ODEs").

For a budget of N model calls the grid t_0 > t_1 > ... > t_{N-1} > (sigma = 0) keeps its start
t_0 and its end at sigma = 0 and moves its N - 1 other model times (the last one anywhere above
the schedule's t_min) to minimise the RMS distance between the solver's samples and a teacher's
(the exact PF-ODE solution, ``samplers.accuracy.Reference``, or any many-step solver) from the
same noise. They are parameterised by log-SNR increments,

    lambda_k = lambda_0 + (lambda(t_min) - lambda_0) sum_{j<k} w_j,   w = softmax([u, 0]),

so any u gives a valid decreasing grid; u is searched derivative-free (Nelder-Mead) from the
start spacing. LD3's decoupled model times (optional) add per-point log-SNR shifts of the time
the model is called at, the coefficients staying those of the grid. The solver's coefficient
tables are those of the base method (``BASES``) on the candidate grid, run by a traced copy of
the ``linear_multistep`` recurrence (tables as arguments, so one compile serves the search). The
result is an artefact -- the grid's times (and model times) and
the base method -- saved with orbax (``save_grid``/``load_grid``) and turned into a ``Sampler`` of
the base method on that grid by ``learnt_grid_sampler``.

Per-step choices, a per-step solver search in the spirit of USF (Liu et al. 2023, "A Unified Sampling
Framework for Solver Searching of Diffusion Probabilistic Models"), chosen by coordinate descent on the
same loss, alternating with the grid search (``STEPWISE``): the order of each step
(``search_orders=True``, DPM-Solver++ multistep bases: 1 to the base's order, at most i + 1 at step i; the
first step and the last one to sigma = 0 stay first order; the artefact carries "orders"), or, on the base
"usf" (``samplers.ode.usf``, UniPC bh2 steps), each step's order, prediction type and corrector (the artefact
carries "orders", "eps" and "corrected").

Variant choice (``fit_select``): model selection on held-out data. Each variant spec
("base[:flag+flag]", ``parse_spec``) is fitted on training draws and the artefact with the lowest
RMS on disjoint validation draws is kept; it records its "spec" and every candidate's validation
(and training) RMS.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from scipy.optimize import minimize

from samplers.accuracy import rms
from samplers.core import Sampler, sample
from samplers.grids import TimeGrid, time_grid
from samplers.ode.common import check_choice, predictor
from samplers.ode.ddim import ddim, ddim_coefficients
from samplers.ode.dpm_solver import dpm_solver_pp, multistep_tables
from samplers.ode.ipndm import ipndm, ipndm_coefficients
from samplers.ode.multistep import linear_multistep, multistep_orders
from samplers.ode.usf import default_choices, usf, usf_tables
from samplers.schedules import Schedule


def _dpmpp(order: int, third_order: str = "reference"):
    def tables(grid):  # as dpm_solver_pp(method="multistep") builds them (lower_order_final=True)
        orders = multistep_orders(grid.num_steps, order, True, grid.final_zero)
        return multistep_tables(grid, "x0", orders, "dpmsolver", third_order)
    build = lambda schedule, grid, predicts: dpm_solver_pp(schedule, grid, order, predicts, third_order=third_order)
    return "x0", tables, build


def _ddim():
    def tables(grid):
        a, b = ddim_coefficients(grid)
        return a, b[:, None]
    return "x0", tables, ddim


def _ipndm(order: int):
    return ("eps", lambda grid: ipndm_coefficients(grid, order),
            lambda schedule, grid, predicts: ipndm(schedule, grid, predicts, order=order))


# base name -> (space, tables(grid) -> (A, B) for linear_multistep, builder(schedule, grid, predicts))
BASES: dict[str, tuple[str, Callable, Callable]] = {
    "ddim": _ddim(),
    "dpm_solver_pp_2m": _dpmpp(2),
    "dpm_solver_pp_3m": _dpmpp(3),
    "dpm_solver_pp_3m_taylor": _dpmpp(3, "taylor"),
    "ipndm": _ipndm(4),
    "usf": ("x0", lambda grid: usf_tables(grid, *default_choices(grid)),
            lambda schedule, grid, predicts: usf(schedule, grid, predicts)),
}
# bases whose per-step orders can be searched -> (highest order, third_order of ``multistep_tables``)
ORDERED = {"dpm_solver_pp_2m": (2, "reference"), "dpm_solver_pp_3m": (3, "reference"),
           "dpm_solver_pp_3m_taylor": (3, "taylor")}


# variant flags of a spec "base:flag+flag" -> the fit_grid option each one sets
FLAGS = {"decoupled": "decouple", "orders": "search_orders"}


def parse_spec(spec: str, name: str = "spec") -> tuple[str, dict]:
    """(base, fit_grid options) of a variant spec "base[:flag+flag]" (``BASES`` names, ``FLAGS``
    flags; "orders" only on an ``ORDERED`` base); ValueError naming ``name`` otherwise."""
    if not isinstance(spec, str):
        raise ValueError(f"{name} must be a string 'base[:flag+flag]', got {spec!r}")
    base, _, variant = spec.partition(":")
    check_choice(f"{name} base", base, sorted(BASES))
    flags = variant.split("+") if variant else []
    for flag in flags:
        check_choice(f"{name} flag", flag, sorted(FLAGS))
    if "orders" in flags:
        check_choice(f"{name} base (flag 'orders')", base, sorted(ORDERED))
    return base, {FLAGS[f]: True for f in flags}


def ordered_tables(base: str, grid: TimeGrid, orders) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of DPM-Solver++ multistep ``base`` with per-step ``orders``, B padded to 3 columns."""
    A, B = multistep_tables(grid, "x0", np.asarray(orders, int), "dpmsolver", ORDERED[base][1])
    return A, np.pad(B, ((0, 0), (0, 3 - B.shape[1])))


def order_choices(top: int, nfe: int) -> list[tuple[int, ...]]:
    """The orders each step may take: step i at most min(top, i + 1); the first and the last
    (to sigma = 0) step first order."""
    return [(1,) if i in (0, nfe - 1) else tuple(range(1, min(top, i + 1) + 1)) for i in range(nfe)]


class Stepwise(NamedTuple):
    """A base whose per-step choices ``fit_grid`` searches. A step's choice is a tuple of ints, one per
    artefact key of ``keys``; ``choices(nfe)``: the tuples each step may take; ``tables(grid, rows)``: (A, B)
    for per-step choices ``rows`` (N, len(keys)); ``default(grid)``: the base's own rows; ``always``: searched
    without ``search_orders``."""

    keys: tuple[str, ...]
    choices: Callable[[int], list[list[tuple[int, ...]]]]
    tables: Callable[[TimeGrid, np.ndarray], tuple[np.ndarray, np.ndarray]]
    default: Callable[[TimeGrid], np.ndarray]
    always: bool = False


def _ordered_stepwise(base: str) -> Stepwise:
    """The per-step orders of DPM-Solver++ multistep ``base`` (``order_choices``)."""
    top = ORDERED[base][0]
    return Stepwise(("orders",), lambda nfe: [[(o,) for o in c] for c in order_choices(top, nfe)],
                    lambda grid, rows: ordered_tables(base, grid, rows[:, 0]),
                    lambda grid: multistep_orders(grid.num_steps, top, True, True)[:, None])


def _usf_choices(nfe: int) -> list[list[tuple[int, int, int]]]:
    """(order up to 3, data / noise prediction, corrector off / on) per step; the last one uncorrected."""
    return [[(o, e, c) for o in orders for e in (0, 1) for c in ((0,) if i == nfe - 1 else (0, 1))]
            for i, orders in enumerate(order_choices(3, nfe))]


STEPWISE = {**{base: _ordered_stepwise(base) for base in ORDERED},
            "usf": Stepwise(("orders", "eps", "corrected"), _usf_choices, lambda grid, rows: usf_tables(grid, *rows.T),
                            lambda grid: np.stack(default_choices(grid), 1), always=True)}


def step_tables(base: str, grid: TimeGrid, rows) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of ``base`` on ``grid`` with per-step choices ``rows`` (N, len(STEPWISE[base].keys))."""
    return STEPWISE[base].tables(grid, np.rint(np.asarray(rows)).astype(int))


def grid_from_params(schedule: Schedule, u, t_start: float, t_min: float) -> TimeGrid:
    """The grid of len(u) + 1 model calls from ``t_start``, then sigma = 0: the k-th inner point at
    lambda_0 + (lambda(t_min) - lambda_0) sum_{j<k} softmax([u, 0])_j (module docstring)."""
    u = np.append(np.asarray(u, np.float64), 0.0)
    w = np.exp(u - u.max())
    lam0, lam1 = float(schedule.lambda_(t_start)), float(schedule.lambda_(t_min))
    inner = schedule.t_from_lambda(lam0 + (lam1 - lam0) * np.cumsum(w / w.sum())[:-1])
    return time_grid(schedule, timesteps=np.concatenate([[t_start], inner]), final="zero")


def params_from_grid(schedule: Schedule, grid: TimeGrid, t_min: float, floor: float = 1e-2) -> np.ndarray:
    """u of ``grid_from_params`` for a grid ending at sigma = 0 (its model times' log-SNR increments,
    the remainder to lambda(t_min) floored at ``floor`` of the span so that u stays finite)."""
    lam = np.asarray(grid.lam[:-1], np.float64)
    span = float(schedule.lambda_(t_min)) - lam[0]
    inc = np.diff(lam) / span
    return np.log(inc / max(1.0 - inc.sum(), floor))


def _traced_run(wrap_model: Callable, model_fn: Callable):
    """x_N of ``linear_multistep`` with the tables (A (N,), B (N, K)) and times t (N,) as traced arguments."""

    @jax.jit
    def run(A, B, t, x):
        fn = wrap_model(model_fn)

        def body(carry, row):
            x, hist = carry
            a, b, ti = row
            hist = jnp.concatenate([fn(x, ti)[None], hist[:-1]])
            return (a * x + jnp.tensordot(b, hist, 1), hist), None

        hist = jnp.zeros((B.shape[1],) + x.shape, x.dtype)
        return jax.lax.scan(body, (x, hist), (A, B, t))[0][0]

    return run


def fit_grid(schedule: Schedule, model_fn: Callable, base: str, nfe: int, x_start, x_teacher, *,
             predicts: str = "eps", t_start: float | None = None, init_spacing: str = "logsnr",
             decouple: bool = False, max_evals: int = 3000, init_t=None, search_orders: bool = False,
             order_sweeps: int = 2) -> dict:
    """Search the grid of ``nfe`` calls (ending at sigma = 0) minimising RMS(base(x_start), x_teacher).

    ``x_start`` is noise at ``t_start`` (the schedule's ``t_max`` by default; the other model times
    lie above its ``t_min``), ``x_teacher`` the teacher's samples from it at sigma = 0. Returns the
    artefact {"t": the grid's N model times,
    "base", "rms_init", "rms"} (the RMS on the start grid ``init_spacing`` and on the found one);
    ``decouple=True`` also searches the times the model is called at (LD3's decoupled model times:
    log-SNR shifts of the grid's points), returned as "t_model". ``init_t`` (the ``nfe`` model times of
    a grid from ``t_start``, e.g. a GITS grid of ``samplers.ode.gits``) replaces ``init_spacing``.
    ``search_orders`` (a base of ``ORDERED``) alternates ``order_sweeps`` coordinate-descent sweeps
    over the per-step orders with the grid search and returns them as "orders"; the base "usf" always does
    so over its per-step choices, returned as "orders", "eps" and "corrected" (module docstring)."""
    check_choice("base", base, sorted(BASES))
    if search_orders:
        check_choice("base (search_orders=True)", base, sorted(ORDERED))
        if not isinstance(order_sweeps, int) or order_sweeps < 1:
            raise ValueError(f"order_sweeps must be an integer >= 1, got {order_sweeps!r}")
    if not isinstance(nfe, int) or nfe < 2:
        raise ValueError(f"nfe must be an integer >= 2 (one inner grid point to move), got {nfe!r}")
    t_start = schedule.t_max if t_start is None else float(t_start)
    t_min = schedule.t_min
    stepwise = STEPWISE[base] if search_orders or (base in STEPWISE and STEPWISE[base].always) else None
    space, tables, _ = BASES[base]
    run = _traced_run(predictor(schedule, predicts, space), model_fn)
    x_start, x_teacher = jnp.asarray(x_start), np.asarray(x_teacher, np.float64)

    def grids(p):
        grid = grid_from_params(schedule, p[:nfe - 1], t_start, t_min)
        t_model = grid.t[:-1]
        if decouple:
            lam = np.clip(grid.lam[:-1] + p[nfe - 1:], schedule.lambda_(schedule.t_max), schedule.lambda_(t_min))
            t_model = np.clip(schedule.t_from_lambda(lam), t_min, schedule.t_max)
        return grid, t_model

    def loss(p, rows=None):
        grid, t_model = grids(p)
        A, B = tables(grid) if rows is None else step_tables(base, grid, rows)
        out = run(jnp.asarray(A, x_start.dtype), jnp.asarray(B, x_start.dtype), jnp.asarray(t_model), x_start)
        err = float(np.sqrt(np.mean((np.asarray(out, np.float64) - x_teacher) ** 2)))
        return err if np.isfinite(err) else 1e6

    if init_t is None:
        start = time_grid(schedule, nfe, init_spacing, t_start=t_start, final="zero")
    else:
        start = time_grid(schedule, timesteps=np.asarray(init_t, np.float64), final="zero")
        if start.num_steps != nfe or start.t[0] != t_start:
            raise ValueError(f"init_t must hold {nfe} model times starting at t_start={t_start}, got {init_t!r}")
    u0 = params_from_grid(schedule, start, t_min)
    u0 = np.concatenate([u0, np.zeros(nfe if decouple else 0)])

    def search(u, rows):
        res = minimize(loss, u, args=(rows,), method="Nelder-Mead",
                       options={"maxfev": max_evals, "xatol": 1e-4, "fatol": 1e-7, "adaptive": True})
        return res.x if res.fun < loss(u, rows) else u

    rows = None
    if stepwise:
        best, rows = u0, stepwise.default(start).astype(int)
        for _ in range(order_sweeps):
            for i, choices in enumerate(stepwise.choices(nfe)):
                trials = {c: loss(best, np.where(np.arange(nfe)[:, None] == i, c, rows)) for c in choices}
                rows[i] = min(trials, key=trials.get)
            best = search(best, rows)
    else:
        best = search(u0, None)
    grid, t_model = grids(best)
    out = {"t": np.asarray(grid.t[:-1]), "base": base, "rms_init": loss(u0), "rms": loss(best, rows)}
    if stepwise:
        out.update({k: rows[:, j].astype(np.float64) for j, k in enumerate(stepwise.keys)})
    return {**out, "t_model": np.asarray(t_model)} if decouple else out


def learnt_grid_sampler(schedule: Schedule, artefact: dict, predicts: str = "eps") -> Sampler:
    """The base method of ``artefact`` on its learnt grid (its times, then a last step to sigma = 0)."""
    check_choice("artefact base", artefact["base"], sorted(BASES))
    grid = time_grid(schedule, timesteps=np.asarray(artefact["t"], np.float64), final="zero")
    if "t_model" in artefact:  # the model is called at these times, the coefficients are the grid's
        grid = dataclasses.replace(grid, t=np.append(np.asarray(artefact["t_model"], np.float64), grid.t[-1]))
    if "orders" in artefact:
        A, B = step_tables(artefact["base"], grid, np.stack([artefact[k] for k in STEPWISE[artefact["base"]].keys], 1))
        return linear_multistep(grid, predictor(schedule, predicts, "x0"), A, B)
    return BASES[artefact["base"]][2](schedule, grid, predicts)


def fit_select(schedule: Schedule, model_fn: Callable, specs, nfe: int, train, validation, *,
               predicts: str = "eps", **fit_kw) -> dict:
    """Fit every variant of ``specs`` (``parse_spec`` syntax) with ``fit_grid`` on ``train`` =
    (x_start, x_teacher) and keep the artefact whose sampler (``learnt_grid_sampler``) has the lowest
    RMS on ``validation`` = (x_start, x_teacher) from noise draws disjoint from ``train``'s: model
    selection on held-out data. The artefact adds "spec" (the chosen one) and, per candidate spec,
    "validation_rms" and "train_rms" (``fit_grid``'s "rms"). ``fit_kw`` go to every ``fit_grid`` call
    (the spec's flags set ``decouple`` / ``search_orders``)."""
    if isinstance(specs, str) or not specs:
        raise ValueError(f"specs must be a non-empty list of variant specs 'base[:flag+flag]', got {specs!r}")
    parsed = {spec: parse_spec(spec, "specs entry") for spec in specs}
    clash = sorted(set(fit_kw) & set(FLAGS.values()))
    if clash:
        raise ValueError(f"fit_kw must not set {clash}: the specs' flags set them")
    for name, pair in (("train", train), ("validation", validation)):
        if len(pair) != 2 or np.shape(pair[0]) != np.shape(pair[1]):
            raise ValueError(f"{name} must be a pair (x_start, x_teacher) of equal shapes, got {type(pair)!r}")
    run = jax.jit(sample, static_argnums=(0, 1))
    arts, val = {}, {}
    for spec, (base, opts) in parsed.items():
        arts[spec] = fit_grid(schedule, model_fn, base, nfe, *train, predicts=predicts, **opts, **fit_kw)
        smp = learnt_grid_sampler(schedule, arts[spec], predicts)
        val[spec] = rms(run(smp, model_fn, jnp.asarray(validation[0])).x, validation[1])
    chosen = min(val, key=val.get)
    return {**arts[chosen], "spec": chosen, "validation_rms": val,
            "train_rms": {spec: art["rms"] for spec, art in arts.items()}}


# orders, eps, corrected: per-step choices (``STEPWISE``); coef: the per-step coefficients of an LSD artefact
# (samplers.ode.lsd) or DC-Solver's cascade regression; rho, rho_searched, coef_last: DC-Solver's ratios and the
# regression's last-step coefficients (ode.dc_solver)
ARRAYS = ("t", "t_model", "coef", "orders", "eps", "corrected", "rho", "rho_searched", "coef_last")


def save_grid(path: str, artefact: dict) -> None:
    """Write an artefact of ``fit_grid`` (its times as arrays, the rest as JSON: strings kept,
    dicts as {name: float}, other numbers as floats) with orbax."""
    def meta_value(v):
        if isinstance(v, str):
            return v
        return {str(k): float(x) for k, x in v.items()} if isinstance(v, dict) else float(v)

    arrays = {k: np.asarray(v, np.float64) for k, v in artefact.items() if k in ARRAYS}
    meta = {k: meta_value(v) for k, v in artefact.items() if k not in ARRAYS}
    args = ocp.args.Composite(times=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        ckpt.save(path, args=args, force=True)


def load_grid(path: str) -> dict:
    """An artefact written by ``save_grid``."""
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        out = ckpt.restore(path, args=ocp.args.Composite(times=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    return {**{k: np.asarray(v, np.float64) for k, v in out["times"].items()}, **out["meta"]}

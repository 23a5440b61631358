"""Time-parallel sampling of any ``Sampler`` by sliding-window fixed-point iterations over its own
``step`` (ParaDiGMS: Shih et al. 2023, "Parallel Sampling of Diffusion Models", Alg. 1).

The sequential run is the recurrence ``S_{i+1} = step(S_i, k_i)`` with the keys of
``samplers.core.sample`` (``init_key, step_key = split(key)``, ``k = split(step_key, N)``), so a
stochastic step draws the same noise here. A window holds the exact state ``S_s`` and guesses of
``S_{s+1} .. S_{s+p}``. A round steps the ``p`` states ``S_s .. S_{s+p-1}`` at once -- one
batched, device-sharded call of the model (``mesh.window_map``), giving ``T_j = step(S_j)`` and,
for states that carry more than ``x``, each step's model output ``m_j`` -- and rebuilds the
guesses by one of three rules (``update``):

* ``"increments"`` (default; Picard as in ParaDiGMS): ``x_{i+1} = x_i + d_i(x_i)`` with
  ``d_i(x) = step(S_i(x)).x - x``, so ``x_{s+j+1} = x_s + sum_{l<=j} d_{s+l}`` by cumulative
  sums; integer counters (``nfe``) likewise. For a state whose only float field is ``x``
  (``BasicState``: one-step ODE solvers, Heun, RK, singlestep DPM-Solver, one-step SDE samplers)
  that is all, with any number of model calls a step. A state with a history (``hist``,
  ``x_prev``: multistep solvers of order >= 2 and UniPC; DDIM's and DDPM's states are x alone)
  takes its other fields by Jacobi, refreshed with this round's outputs: point ``j`` is
  re-stepped, with its model output ``m_j`` replayed (no model call), from ``x_j`` and the other
  fields of ``T_{j-1}``, and the increment of ``x`` is taken from that. Cumulative sums of the
  history itself would not contract: a history is a shift register whose increments are O(1). Fast when the step is near the identity in ``x`` (DDIM, DDPM,
  DPM-Solver(++) multistep); a step whose ``x`` follows another field (UniPC's corrector base
  ``x_prev``) converges little faster than sequentially this way -- use ``"states"``.
  ``slope`` solves the linear part of each step exactly (a per-sample Newton step with the
  Jacobian of ``x -> step(S_j(x)).x`` replaced by one number ``L_j``):
  ``x_{j+1} = L_j x_j + (T_j.x - L_j x_j^old)`` is a linear recurrence solved by an associative
  scan. ``"one"`` (default) is ``L = 1``, plain Picard; ``"secant"`` takes ``L_j`` from this
  round's and the last round's ``(x_j, T_j.x)``; ``"tangent"`` takes it from a Jacobian-vector
  product of the window's step along the last change of ``x_j`` (``jax.jvp`` through the sharded
  call: no extra round, about twice the work a round). Both are Rayleigh quotients
  ``<dx, df> / <dx, dx>`` clipped to [0, ``SLOPE_MAX``], 1 for a point new to the window. The
  slope changes the speed only, never the fixed point; it pays off where the step pulls ``x``
  hard towards the model's mean (DDPM, 100 steps at tol 0.1: 11-12 rounds with ``"tangent"``, 21-22 plain).
  ``"jacobian"`` is the full per-sample Newton step (DEER: Lim et al. 2024): ``J_j`` the (d, d)
  Jacobian of ``x -> step(S_j(x)).x`` from d JVPs in the same round (no extra round; d + 1 times
  a round's model work, p B d^2 floats), the affine recurrence solved in residual form by an
  associative scan of matrix products. Float32 products of Jacobians taken at wrong points
  overflow (a 64-d mixture gave NaN), so a sample takes its Newton update where it is finite and
  at most ``NEWTON_TRUST`` times the tangent update's correction: over the whole window, or else on
  the prefix of the window where that holds, the tangent slope after it (``_trusted``; bench
  mixtures, 100 DDPM steps: 8 / 16 / 12 rounds on the 8 / 32 / 64-d ones, 11 / 16 / 13 with the
  whole-window test alone). A state with a history is solved for whole (``_flat``: x and every float field, D
  numbers a sample, D JVPs): for DPM-Solver++(2M), x_{i+1} = F_i(x_i, m_{i-1}) with
  m_{i-1} = m(x_{i-1}) gives delta_{i+1} = A_i delta_i + C_i delta_{i-1} + r_i
  (C_i = dF_i/dm_{i-1} dm_{i-1}/dx_{i-1}), a first-order recurrence on (x, history) with
  2d x 2d blocks, so Newton's information passes through the history instead of one step a
  round (100 steps, bench mixtures 8/32/64-d: 6/8/7 rounds, 12/12/15 with the history Jacobi).
* ``"states"`` (Jacobi over whole states with replayed model outputs): ``S_{j+1} = step(S_j)``
  rebuilt from ``S_s`` by a scan of ``p`` steps with the model replaced by the recorded ``m_j``
  -- cheap, no model call; only the model outputs come from the previous round's states. Works
  for any sampler with one model call a step (UniPC included).
* ``"jacobi"`` (plain Jacobi over whole states): ``S_{s+j+1} = T_{s+j}``. Information travels
  one step per round, so on an ODE it is hardly faster than the sequential run and a loose
  tolerance stops it early with a large error; kept as the baseline the benchmark reports.

Which of the ``"increments"`` paths runs follows from the state's fields, never from the solver's
name. Convergence and sliding follow ``control``: point ``i+1`` has converged when its mean
squared change (every float field: ``x`` per sample, the worst sample; other fields as a whole)
is at most ``tol^2 g_i^2``, with ``g_i`` the noise standard deviation of step ``i``
(``step_scale``), AND (``confirm=True``, the default) the same round moved the window's last
point -- the final sample once the window reaches the end -- by at most ``tol`` times its RMS
(worst sample). The per-step test alone (``confirm=False``, ParaDiGMS's published rule) cannot
bound the final error: an error ~ ``tol g_i`` frozen at a bifurcation of the flow is amplified
downstream and can put a sample on another branch of the mixture (issue 24: worst sample off by
0.4-1.7 of the data scale at tol 1). With the confirmation a prefix is accepted only while one
more sweep moves the end by less than ``tol`` relative to its scale; measured (32-d, 6-component
mixtures, 64 samples, 100 steps, window 96, seeds 0-4, with the re-test below): worst-sample
relative error at the end <= 5.9e-3 at tol 1, <= 1.8e-3 at 0.3, <= 4.2e-4 at 0.1 for DDPM and
<= 7.3e-5 at 0.3 for DDIM, non-increasing as tol shrinks; a heuristic relation, not a proof: the
final error is the end's remaining movement, which the confirmation keeps below ``tol`` x RMS.
A point that passed is tested again in every round while it stays in the window (``_advance``): only
the points computed from the window's exact start in as many rounds are exempt, so the frontier moves
back when a point that passed changes again. Without the re-test a point that passed once counted as
converged for good: one sample of a 64-d mixture run alone, 100 Euler steps, plain Picard at tol 0.3,
passed every point up to step 76 while on another branch, and the run ended 1.28 of its RMS off
(re-tested: 1.2e-4, 22 rounds instead of 14). The relation assumes the end's movement is the error
left, true for plain Picard (slope 1 over-states the propagation of a change through DDPM's contracting
steps) and for Newton (quadratic: the error left is far below the last movement), not for the
``"secant"`` / ``"tangent"`` slopes: a Rayleigh quotient along the last change under-states the
propagation of an error along other directions, so a slow component is left while the end hardly moves
(MLP, 100 DDPM steps, secant at tol 0.1: the last round moved a sample's end by 5e-4 of its RMS while
it was 2.1e-3 off). ``tol=None`` takes ``DEFAULT_TOL[slope]`` (ODE / SDE sampler): plain Picard 0.1 /
0.1, secant and tangent 0.1 / 0.01, the Jacobian 0.3 / 0.1. Each keeps every sample within 1e-3 of its
sequential run on the benchmark's models (8 / 32 / 64-d mixtures and an MLP, DDIM, Euler,
DPM-Solver++(2M), DDPM, 100 and 1000 steps, window = steps), in batches of 64 and with each sample run
alone (the latency case, where no slower sample holds the run open): the values were chosen on one draw
and checked on others (README). At plain Picard's former ODE default 0.3, samples run alone ended up to
1.2e-3 off. With a window much shorter than the trajectory the confirmation sees the window's end,
not the final sample, and bounds nothing: at 1000 steps, window 400, 8 samples of a 32-d mixture,
DDIM ended a sample 8.3e-3 off at tol 0.3 (1.2, on another branch, before the re-test) and 1.2e-3 at
0.1; before the re-test, on an 8-d mixture, worst 1.7e-2 at tol 0.3, 5.2e-3 at 0.03, 1.1e-3 at 0.01
(the per-step rule alone: 0.87, 1.6e-2, 8.8e-3), and at 0.003 the confirmation waited on the
end's float32 round-off (224 rounds). There, pass a window close to ``num_steps`` (window 1000:
the same DDIM run on the 32-d mixture took 9 rounds, worst sample 2.5e-5) or a small tol.
The frontier passes the converged prefix plus one each round, and the exact prefix grows by one
each round, so rounds <= ``num_steps``; the run ends when the frontier reaches the last step. The
window slides to the frontier but never past the last ``p`` steps: where ParaDiGMS lets the window
run past the end (idle slots), here the steps that passed and are still inside it keep being refined
by the round's ``p`` evaluations and tested. A step the window has slid past is final. The fixed
point is the sequential trajectory, and ``tol = 0`` reproduces it up to round-off.

``switch`` (``Switch``: the Picard consistency model's model switching, So et al. 2025;
``samplers.parallel.pcm``) steps the first rounds with a blend of the base model and a PCM and
accepts no point in those rounds (then rounds <= num_steps + the switch's rounds); the fixed point
stays the base sampler's. ``picard_sweep`` is one full-window round of this update, for training a PCM.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.checks import check_number
from samplers.core import ModelFn, PRNGKey, Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid
from samplers.parallel import control
from samplers.parallel.mesh import check_mesh, replicate, window_map

UPDATES = ("increments", "states", "jacobi")
SLOPES = ("one", "secant", "tangent", "jacobian")
SLOPE_MAX = 2.0  # slopes are clipped to [0, SLOPE_MAX]: a step may expand x, never flip it
JVP_BATCH = 8  # slope="jacobian": Jacobian columns (JVPs) computed at once
NEWTON_BATCH = 8  # slope="jacobian": samples whose Newton recurrence is scanned at once (bounded memory)
NEWTON_TRUST = 4.0  # slope="jacobian": a sample's Newton update is taken if at most this x the tangent one
# tol=None, per slope and sampler kind: every sample within 1e-3 relative error of its sequential run on the
# benchmark's models, in a batch and run alone (module doc)
DEFAULT_TOL = {"one": {"ode": 0.1, "sde": 0.1}, "secant": {"ode": 0.1, "sde": 0.01},
               "tangent": {"ode": 0.1, "sde": 0.01}, "jacobian": {"ode": 0.3, "sde": 0.1}}


class Switch(NamedTuple):
    """Model switching of the Picard consistency model (PCM: So et al. 2025, "PCM: Picard Consistency
    Model for Fast Parallel Sampling of Diffusion Models", Sec. 3.3): round r steps the window with the
    blend m = m_base + lambda_r (m_PCM - m_base) of the base ``model_fn`` and the PCM ``model_fn`` here,
    ``lambdas`` = (lambda_0, lambda_1, ...) in [0, 1] and lambda_r = 0 from round ``len(lambdas)`` on,
    so the iteration ends as plain Picard of the base model. No point is accepted in a round with
    lambda_r > 0 (its steps are not the base's), which keeps the fixed point, and ``tol = 0``'s exactness,
    the base sampler's. A blended round evaluates both models (one call where the PCM is the base plus a
    residual and the compiler merges the two base calls); ``ParallelStats.model_calls`` counts the
    sampler's calls. ``samplers.parallel.pcm.linear_switch`` builds the paper's decreasing schedule."""

    model_fn: Callable
    lambdas: tuple


def check_switch(switch) -> None:
    """ValueError naming ``switch`` unless it is None or a ``Switch`` of a callable and values in [0, 1]."""
    if switch is None:
        return
    if not isinstance(switch, Switch) or not callable(switch.model_fn):
        raise ValueError(f"switch must be None or a samplers.parallel.picard.Switch(model_fn, lambdas) with a "
                         f"callable model_fn, got {switch!r}")
    lam = switch.lambdas
    if not isinstance(lam, tuple) or not lam:
        raise ValueError(f"switch.lambdas must be a non-empty tuple of numbers in [0, 1], got {lam!r}")
    for v in lam:
        check_number("switch.lambdas", v, 0.0, 1.0)


def blend(base_fn: ModelFn, pcm_fn: ModelFn, lam) -> ModelFn:
    """m = m_base + lam (m_PCM - m_base) (``Switch``)."""
    return lambda x, t: base_fn(x, t) + lam * (pcm_fn(x, t) - base_fn(x, t))


class ParallelSampler(NamedTuple):
    """A time-parallel driver of ``sampler`` (hashable: pass it as a static argument)."""

    sampler: Sampler
    window: int
    tol: float
    scale: tuple  # g_i per step
    update: str
    slope: str
    mesh: object
    window_axis: str
    batch_axis: str | None
    confirm: bool
    switch: Switch | None = None  # PCM model switching (``Switch``)


@struct.dataclass
class ParallelStats:
    rounds: jax.Array  # sequential rounds = batched model-call rounds
    model_calls: jax.Array  # model calls of all rounds (p steps a round, times the step's calls)
    residual: jax.Array  # last round's worst sqrt(change) / g over the window, comparable to tol
    positions: jax.Array  # (num_steps,) window start of each round (nondecreasing), -1 after the last round


def step_scale(grid: TimeGrid, noise=None) -> np.ndarray:
    """Per-step scale g_i of the convergence test: for SDE samplers the step's noise standard
    deviation ``noise`` (floored at its smallest positive value, so a noise-free last step can
    converge); for ODE samplers sigma_i, the noise level the step starts from."""
    check_grid(grid)
    if noise is None:
        return np.asarray(grid.sigma[:-1], np.float64)
    g = np.asarray(noise, np.float64)
    if g.shape != (grid.num_steps,) or not np.all(np.isfinite(g)) or np.any(g < 0) or not np.any(g > 0):
        raise ValueError(f"noise must hold {grid.num_steps} finite values >= 0, not all zero; got shape {g.shape}")
    return np.maximum(g, g[g > 0].min())


def default_tol(sampler: Sampler, slope: str = "one") -> float:
    """The tolerance ``tol=None`` takes: ``DEFAULT_TOL[slope]``, its ``"sde"`` entry for a sampler with a
    Gaussian ``transition`` (DDPM, ancestral, multistep SDE solvers), else ``"ode"`` (pass the SDE value
    yourself for a stochastic sampler without one: momentum, PC, time-shift)."""
    check_choice("slope", slope, SLOPES)
    return DEFAULT_TOL[slope]["ode" if sampler.transition is None else "sde"]


def time_parallel(sampler: Sampler, window: int, tol: float | None = None, scale=None, *,
                  update: str = "increments", slope: str = "one", mesh=None, window_axis: str = "window",
                  batch_axis: str | None = "batch", confirm: bool = True, switch: Switch | None = None
                  ) -> ParallelSampler:
    """Build the driver: ``window`` steps per round (1 <= window <= num_steps), tolerance
    ``tol >= 0`` relative to the per-step ``scale`` (default 1: absolute) and, with ``confirm``, to
    the final sample's RMS (module doc; the bound needs the window to reach the final sample: take
    ``window`` = num_steps or close to it); ``tol=None`` takes ``default_tol(sampler, slope)``;
    ``scale`` should be ``step_scale(grid[, noise])``; the ``update`` rule,
    the ``slope`` of the increments update (``"one"``, ``"secant"``, ``"tangent"``, ``"jacobian"``: the
    model must be differentiable; ``"jacobian"`` costs d JVPs per point and round, for small d), and an
    optional mesh (``mesh.window_mesh``) whose ``window_axis`` size divides ``window``; ``switch``: PCM
    model switching (``Switch``), None for the base model alone."""
    if not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a samplers.core.Sampler, got {type(sampler).__name__}")
    window = control.check_window(window, sampler.num_steps)
    check_choice("update", update, UPDATES)
    check_choice("slope", slope, SLOPES)
    tol = control.check_tol(default_tol(sampler, slope) if tol is None else tol)
    if not isinstance(confirm, bool):
        raise ValueError(f"confirm must be True or False, got {confirm!r}")
    scale = control.check_scale(scale, sampler.num_steps)
    if slope != "one" and update != "increments":
        raise ValueError(f"slope={slope!r} applies to update='increments' only; use slope='one' with "
                         f"update={update!r}")
    if mesh is None:
        batch_axis = None
    check_mesh(mesh, window, window_axis, batch_axis)
    check_switch(switch)
    return ParallelSampler(sampler, window, tol, scale, update, slope, mesh, window_axis, batch_axis, confirm,
                           switch)


def _float_fields(state) -> dict:
    fields = {f: getattr(state, f) for f in state.__dataclass_fields__ if getattr(state, f) is not None}
    return {f: a for f, a in fields.items() if jnp.issubdtype(jnp.asarray(a).dtype, jnp.inexact)}


def _recording_step(step, model_fn):
    """``(S, k) -> (step(S, k), m)`` with m the step's one model output."""
    def fn(state, key):
        outs = []

        def record(x, t):
            outs.append(model_fn(x, t))
            return outs[-1]

        new = step(state, key, record)
        if len(outs) != 1:
            raise ValueError("a state with fields beyond x needs a sampler with one model call a step "
                             f"(its model output is replayed); this step made {len(outs)}")
        return new, outs[0]

    return fn


def _replayed(step):
    """``(S, k, m) -> step(S, k)`` with the model replaced by its recorded output m."""
    return lambda state, key, m: step(state, key, lambda x, t: m)


def _cumulative(base, new, old):
    return base + jnp.cumsum(new - old, axis=0)


def _rayleigh(dx, df, known):
    """Per point and sample, the slope <df, dx> / <dx, dx> of f = step(x).x along dx, clipped to
    [0, SLOPE_MAX]; 1 where the point is not ``known`` or dx = 0."""
    axes = tuple(range(2, dx.ndim))
    num, den = jnp.sum(dx * df, axis=axes), jnp.sum(dx * dx, axis=axes)
    slope = jnp.where(known[:, None] & (den > 0), num / jnp.where(den > 0, den, 1.0), 1.0)
    return jnp.clip(slope, 0.0, SLOPE_MAX).reshape(slope.shape + (1,) * (dx.ndim - 2)).astype(dx.dtype)


def _linear_recurrence(base, slope, offset):
    """x_0 = base, x_{j+1} = slope_j x_j + offset_j for all j at once (associative scan)."""
    def compose(first, second):
        return second[0] * first[0], second[0] * first[1] + second[1]

    a, b = jax.lax.associative_scan(compose, (jnp.broadcast_to(slope, offset.shape), offset))
    return a * base[None] + b


def _newton_correction(jac, residual, cut=None):
    """delta_0 = 0, delta_{j+1} = M_j delta_j + r_j per sample (M_j = J_j: (p, B, D, D),
    r_j = T_j - S_{j+1}^old of the state flattened to D, ``_flat``) for all j at once (associative scan
    of the affine maps). The Newton update in residual form, x^new = x^old + delta: at the fixed point
    r = 0 and no large terms cancel (the form x^new = J x^new + (T - J x^old) loses float32 precision
    through products of Jacobians).
    ``cut`` = (keep (p, B), slope (p, B), d): M_j = J_j where ``keep``, else slope_j on the x block (the
    first d numbers) and 0 on the other fields -- the slope update in residual form (``_increments``).
    Scanned over chunks of ``NEWTON_BATCH`` samples: the scan's temporaries, a few times its
    Jacobians, stay a chunk's (1000 steps x 64 samples of a 2M state of 2 x 64 numbers: 4 GB each)."""
    def compose(first, second):
        return second[0] @ first[0], (second[0] @ first[1][..., None])[..., 0] + second[1]

    flat = residual.reshape(residual.shape[:2] + (-1,))
    b, size = flat.shape[1:]
    chunk = NEWTON_BATCH if b % NEWTON_BATCH == 0 else b
    part = lambda a, start: jax.lax.dynamic_slice_in_dim(a, start, chunk, axis=1)

    def matrices(start):
        if cut is None:
            return part(jac, start)
        keep, slope, d = cut
        x_block = jnp.diag((jnp.arange(size) < d).astype(jac.dtype))
        return jnp.where(part(keep, start)[..., None, None], part(jac, start),
                         part(slope, start)[..., None, None] * x_block)

    out = jax.lax.map(lambda start: jax.lax.associative_scan(compose, (matrices(start), part(flat, start)))[1],
                      jnp.arange(0, b, chunk))  # (b / chunk, p, chunk, D)
    return jnp.moveaxis(out, 0, 1).reshape(residual.shape)


def sample_jacobians(fn, z):
    """(..., D, D): d fn(z)[..., b, :] / d z[..., b, :] for every sample b of z (..., D), for an ``fn`` that maps
    each sample on its own: D JVPs, each along one basis vector broadcast to every sample, ``JVP_BATCH`` at once
    (bounded memory)."""
    column = lambda e: jax.jvp(fn, (z,), (jnp.broadcast_to(e, z.shape),))[1]
    return jnp.moveaxis(jax.lax.map(column, jnp.eye(z.shape[-1], dtype=z.dtype), batch_size=JVP_BATCH), 0, -1)


def _flat(states):
    """(p, B, D): each sample's float fields of ``p`` window points, x first, flattened to one vector (the
    state Newton solves for). A field is x-shaped or a stack of x-shaped arrays (a multistep history)."""
    x, fields = states.x, _float_fields(states)
    p, b = x.shape[:2]
    parts = []
    for name in ["x"] + [f for f in fields if f != "x"]:
        a = fields[name]
        if a.shape[a.ndim - x.ndim + 1:] != x.shape[1:]:
            raise ValueError(f"slope='jacobian' needs float state fields shaped like x or stacks of x; "
                             f"{name} has shape {a.shape[1:]}, x {x.shape[1:]}")
        parts.append(jnp.moveaxis(a.reshape((p, -1, b, x[0, 0].size)), 2, 1).reshape(p, b, -1))
    return jnp.concatenate(parts, axis=-1)


def _unflat(z, like):
    """Inverse of ``_flat``: ``like`` with its float fields taken from z (p, B, D)."""
    x, fields = like.x, _float_fields(like)
    p, b = x.shape[:2]
    out, at = {}, 0
    for name in ["x"] + [f for f in fields if f != "x"]:
        a = fields[name]
        size = a[0].size // b
        part = z[..., at:at + size].reshape(p, b, -1, x[0, 0].size)
        out[name], at = jnp.moveaxis(part, 1, 2).reshape(a.shape).astype(a.dtype), at + size
    return like.replace(**out)


def _trusted(newton, plain, d: int):
    """(p, B): where point j + 1 takes Newton's matrix (``_increments``). A sample whose Newton correction
    is finite and, over the window, at most ``NEWTON_TRUST`` times the slope update's (largest mean
    square of x over the points) takes it everywhere; another one up to the first point j at which the
    same test over points 1..j fails."""
    size = lambda z: jnp.nan_to_num(jnp.mean(jnp.square(z[..., :d]), axis=-1), nan=jnp.inf)  # (p, B)
    excess = jax.lax.cummax(size(newton), axis=0) - NEWTON_TRUST**2 * jax.lax.cummax(size(plain), axis=0)
    whole = jnp.all(jnp.isfinite(newton), axis=(0, 2)) & (excess[-1] <= 0)
    return (jnp.cumsum(excess > 0, axis=0) == 0) | whole[None]


def _increments(window, stepped, slope, jac=None, raw=None):
    """Picard: x_{j+1} = slope_j x_j + (step(x_j^old) - slope_j x_j^old) (cumulative increments for
    slope = 1), integer counters by cumulative increments, other fields from the stepped state. With
    ``jac`` (p, B, D, D), the Jacobian of the whole float state's step (``_flat``), the Newton update
    of every float field, ``_newton_correction`` with residual ``raw - old`` (``raw``: the states
    stepped from the old guesses, default ``stepped``), on the prefix of the window where it is
    trusted: per sample, up to the first point j at which Newton's largest correction of x over
    points 1..j is not finite or more than ``NEWTON_TRUST`` times the ``slope`` update's (``_trusted``);
    from there on the recurrence continues with the slope (one recurrence, Newton's matrices before the
    cut, the slope's after it, with the slope update's own residual; a sample whose result is not
    finite takes the slope update). Both updates have the sequential run as their fixed point."""
    base = jax.tree.map(lambda a: a[:1], window)
    prev = jax.tree.map(lambda a: a[:-1], window)
    leaf = lambda b, new, old: _cumulative(b, new, old) if jnp.issubdtype(new.dtype, jnp.integer) else new
    x = _linear_recurrence(window.x[0], slope, stepped.x - slope * prev.x)
    out = jax.tree.map(leaf, base, stepped, prev).replace(x=x)
    if jac is None:
        return out
    old = _flat(jax.tree.map(lambda a: a[1:], window))
    residual = _flat(stepped if raw is None else raw) - old
    plain, d = _flat(out) - old, x[0, 0].size
    newton = _newton_correction(jac, residual)
    trusted = _trusted(newton, plain, d)
    slopes = jnp.broadcast_to(slope, x.shape).reshape(x.shape[:2] + (-1,))[..., 0]
    follow = jnp.where(trusted[..., None], residual, _flat(stepped) - old)  # after the cut: the slope update's own
    hybrid = jax.lax.cond(jnp.all(trusted), lambda: newton,  # every point trusted: the same recurrence, scanned once
                          lambda: _newton_correction(jac, follow, (trusted, slopes, d)))
    finite = jnp.all(jnp.isfinite(hybrid), axis=(0, 2))
    return _unflat(old + jnp.where(finite[None, :, None], hybrid, plain), out)


def _advance(passed, s, f, exact, accepting, n):
    """The frontier after a round: ``s`` + the converged prefix of the window's points s+1..s+p plus one
    (``control.stride``), where a point has converged if it ``passed`` this round's test or is exact (at or
    before ``exact``: computed in as many rounds from the window's start); a point that passed in an earlier
    round only is tested again while it stays in the window, so the frontier can move back. ``f`` (the last
    frontier) is kept in a round that is not ``accepting`` (``Switch``)."""
    point = s + jnp.arange(1, passed.shape[0] + 1)
    return jnp.where(accepting, s + control.stride(passed | (point <= exact), n - s), f)


def _change(new, old):
    """(p,) worst mean squared change of the float fields between two windows' points 1..p."""
    per_field = []
    for name, a in _float_fields(new).items():
        d = a[1:] - getattr(old, name)[1:]
        if name == "x":
            per_field.append(jax.vmap(control.mean_square)(d))
        else:
            per_field.append(jnp.mean(d.reshape(d.shape[0], -1).astype(jnp.float32) ** 2, axis=1))
    return jnp.max(jnp.stack(per_field), axis=0)


def start_state(sampler: Sampler, model_fn: ModelFn, x, key: PRNGKey | None = None):
    """(S_0, the N step keys) of ``samplers.core.sample(sampler, model_fn, x, key)``."""
    if key is None:
        key = jax.random.PRNGKey(0)
    init_key, step_key = jax.random.split(key)
    return sampler.init(x, key=init_key, model_fn=model_fn), jax.random.split(step_key, sampler.num_steps)


def picard_sweep(sampler: Sampler, model_fn: ModelFn, states, keys):
    """One round of ``parallel_sample``'s Picard update (``update="increments"``, slope one) over the
    whole trajectory, i.e. with window = num_steps: ``states`` stacks S_0 (exact) .. S_N (guesses) on a
    leading axis with ``i`` = 0..N (``start_state`` broadcast: the driver's first guess), ``keys`` the
    N step keys; returns S_0 and x_{j+1} = x_0 + sum_{l<=j} (step(S_l).x - x_l) (``_increments``). For
    samplers whose state's only float field is x (train.distill.pcm differentiates through it)."""
    if set(_float_fields(states)) != {"x"}:
        raise ValueError(f"picard_sweep needs a sampler whose state's only float field is x, got "
                         f"{sorted(_float_fields(states))}")
    stepped = jax.vmap(lambda s, k: sampler.step(s, k, model_fn))(jax.tree.map(lambda a: a[:-1], states), keys)
    guesses = _increments(states, stepped, jnp.ones((), states.x.dtype))
    return jax.tree.map(lambda a, g: jnp.concatenate([a[:1], g]), states, guesses)


def parallel_sample(par: ParallelSampler, model_fn: ModelFn, x, key: PRNGKey | None = None, tol=None):
    """Run ``par`` from ``x``: returns ``(final_state, ParallelStats)``; the final state matches
    ``samplers.core.sample(par.sampler, model_fn, x, key)`` to within the tolerance. Jit it with
    ``jax.jit(parallel_sample, static_argnums=(0, 1))``; ``tol`` (a traced scalar >= 0) overrides
    ``par.tol`` without recompiling, e.g. to sweep tolerances."""
    smp, p, update = par.sampler, par.window, par.update
    n = smp.num_steps
    state0, keys = start_state(smp, model_fn, x, key)
    history = set(_float_fields(state0)) != {"x"}

    def stepper_of(fn):
        """The window's batched step with the model ``fn``: (states, keys) -> (stepped, model outputs)."""
        if history or update == "states":
            one = _recording_step(smp.step, fn)
        else:
            one = lambda s, k: (smp.step(s, k, fn), None)
        return window_map(one, par.mesh, par.window_axis, par.batch_axis)

    base_stepper = stepper_of(model_fn)

    def switched(rounds):
        """(the round's batched step, its lambda or None): the base model, or its blend with the PCM."""
        if par.switch is None:
            return base_stepper, None
        lam = jnp.asarray(par.switch.lambdas + (0.0,), jnp.float32)[jnp.minimum(rounds, len(par.switch.lambdas))]
        blended = stepper_of(blend(model_fn, par.switch.model_fn, lam))
        return (lambda s, k: jax.lax.cond(lam > 0, blended, base_stepper, s, k)), lam

    replayed = _replayed(smp.step)
    g2 = jnp.asarray(np.square(par.scale), jnp.float32)
    tol2 = jnp.square(jnp.asarray(par.tol if tol is None else tol, jnp.float32))
    offsets = jnp.arange(p + 1, dtype=jnp.int32)

    def at(states, s):
        """Set each window point's step index i = s + j (<= N: the window never passes the end)."""
        return states.replace(i=(s + offsets).astype(states.i.dtype))

    def rebuild(states, inputs, stepped, outputs, ks, memory, tangent):
        """Guesses of points 1..p from the round's stepped states and model outputs, and the
        (x, step(x).x) pairs the secant slopes of the next round compare with."""
        start = jax.tree.map(lambda a: a[0], states)
        pairs, raw = (inputs.x, stepped.x), stepped
        if update == "jacobi":
            return stepped, pairs
        if update == "states":
            def body(state, xs):
                new = replayed(state.replace(i=xs[1].i), xs[0], xs[2])
                return new, new

            return jax.lax.scan(body, start, (ks, inputs, outputs))[1], pairs
        if history:  # re-step each point from the fields of T_{j-1}, x and its model output unchanged
            fresh = jax.tree.map(lambda b, t: jnp.concatenate([b[None], t[:-1]]), start, stepped)
            fresh = fresh.replace(x=inputs.x, i=inputs.i, nfe=inputs.nfe)
            stepped = jax.vmap(replayed)(fresh, ks, outputs)
        x_last, f_last, known = memory
        if par.slope == "secant":
            slope = _rayleigh(inputs.x - x_last, stepped.x - f_last, known)
        elif par.slope == "tangent":
            slope = _rayleigh(*tangent, known)
        elif par.slope == "jacobian":  # the tangent slope along the last change, from the Jacobian's x block
            direction = jnp.where(known.reshape((-1,) + (1,) * (inputs.x.ndim - 1)), inputs.x - x_last, 0.0)
            d = direction[0, 0].size
            d_step = (tangent[..., :d, :d] @ direction.reshape(direction.shape[:2] + (-1, 1)))[..., 0].reshape(
                direction.shape)
            slope = _rayleigh(direction, d_step, known)
        else:
            slope = jnp.ones((), inputs.x.dtype)
        jac = tangent if par.slope == "jacobian" else None
        return _increments(states, stepped, slope, jac, raw), (inputs.x, stepped.x)

    def body(carry):
        states, s, f, exact, rounds, calls, _, positions, memory = carry
        stepper, lam = switched(rounds)
        idx = s + offsets[:-1]  # step of each evaluated point
        inputs = jax.tree.map(lambda a: a[:-1], states).replace(i=idx.astype(states.i.dtype))
        tangent = None
        if par.slope == "tangent":  # d step(x).x along the last round's change of x (0 for new points)
            x_last, _, known = memory
            direction = jnp.where(known.reshape((p,) + (1,) * (inputs.x.ndim - 1)), inputs.x - x_last, 0.0)
            (stepped, outputs), (d_stepped, _) = jax.jvp(
                lambda x: stepper(inputs.replace(x=x), keys[idx]), (inputs.x,), (direction,))
            tangent = (direction, d_stepped.x)
        elif par.slope == "jacobian":  # J_j = d step(S_j) / d S_j per sample over every float field (_flat)
            step_z = lambda z: stepper(_unflat(z, inputs), keys[idx])  # one JVP per coordinate of S_j
            z = _flat(inputs)
            stepped, outputs = step_z(z)
            tangent = sample_jacobians(lambda z: _flat(step_z(z)[0]), z)
        else:
            stepped, outputs = stepper(inputs, keys[idx])
        guesses, pairs = rebuild(states, inputs, stepped, outputs, keys[idx], memory, tangent)
        new = at(jax.tree.map(lambda a, g: jnp.concatenate([a[:1], g]), states, guesses), s)
        change = _change(new, states)
        g2_j = g2[idx]
        calls = calls + jnp.sum(stepped.nfe - inputs.nfe, dtype=jnp.int32)
        residual = jnp.max(jnp.sqrt(change / g2_j)).astype(jnp.float32)
        # end-to-end confirmation: points pass only in a round that moves the window's last point (the final
        # sample once the window reaches the end) by at most tol relative to its RMS
        end_ok = True
        if par.confirm:
            end_scale2 = jnp.mean(jnp.square(new.x[p]).astype(jnp.float32))
            end_ok = control.mean_square(new.x[p] - states.x[p]) <= tol2 * end_scale2
        accepting = True if lam is None else lam <= 0  # a PCM round accepts nothing (Switch)
        f = _advance(end_ok & (change <= tol2 * g2_j), s, f, exact, accepting, n)
        shift = jnp.clip(f - s, 0, n - p - s)  # slide to the frontier, never past the last p steps
        slide = jnp.minimum(offsets + shift, p)  # slid window; new points start from the last known state
        states = at(jax.tree.map(lambda a: a[slide], new), s + shift)
        positions = positions.at[rounds].set(s)
        kept = offsets[:-1] + shift  # evaluated points that stay in the window, at their new places
        memory = (pairs[0][jnp.minimum(kept, p - 1)], pairs[1][jnp.minimum(kept, p - 1)], kept < p)
        exact = jnp.maximum(jnp.where(accepting, exact + 1, exact), s + shift)  # computed from exact points
        return states, s + shift, f, exact, rounds + 1, calls, residual, positions, memory

    states = at(jax.tree.map(lambda a: jnp.broadcast_to(a, (p + 1,) + a.shape), state0), jnp.int32(0))
    zero = jnp.zeros((), jnp.int32)
    memory = (states.x[:-1], states.x[:-1], jnp.zeros((p,), bool))
    carry = (states, zero, zero, zero, zero, zero, jnp.zeros((), jnp.float32), jnp.full((n,), -1, jnp.int32), memory)
    states, s, _, _, rounds, calls, residual, positions, _ = jax.lax.while_loop(lambda c: c[2] < n, body, carry)
    final = jax.tree.map(lambda a: a[n - s], states)
    return replicate((final, ParallelStats(rounds, calls, residual, positions)), par.mesh)

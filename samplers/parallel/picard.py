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
  hard towards the model's mean (DDPM: 100 steps in 11-12 rounds with ``"tangent"``, 21-22 plain).
  ``"jacobian"`` is the full per-sample Newton step (DEER: Lim et al. 2024): ``J_j`` the (d, d)
  Jacobian of ``x -> step(S_j(x)).x`` from d JVPs in the same round (no extra round; d + 1 times
  a round's model work, p B d^2 floats), the affine recurrence solved in residual form by an
  associative scan of matrix products. Float32 products of Jacobians taken at wrong points
  overflow (a 64-d mixture gave NaN), so a sample takes its Newton update only where it is
  finite and at most ``NEWTON_TRUST`` times the tangent update's correction, else the tangent
  one. Multistep histories stay Jacobi (their dependence on x is not differentiated).
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
mixtures, 64 samples, 100 steps, window 96, seeds 0-4): worst-sample relative error at the end
<= 5.9e-3 at tol 1, <= 3.1e-3 at 0.3, <= 4.2e-4 at 0.1 for DDPM and
<= 7.3e-5 at 0.3 for DDIM, non-increasing as tol shrinks; a heuristic relation, not a proof: the
final error is the end's remaining movement, which the confirmation keeps below ``tol`` x RMS.
``DEFAULT_TOL`` (0.3 for ODE samplers, 0.1 for SDE samplers) met 1e-3 for every sample there
(100 steps, window 96: the window's end is within 4 steps of the final sample). With a window
much shorter than the trajectory the confirmation sees the window's end, not the final sample, and
bounds nothing: at 1000 steps, window 400, DDIM at tol 0.3 left a sample of a 32-d mixture on
another branch (worst 1.2); on an 8-d mixture worst 1.7e-2 at tol 0.3, 5.2e-3 at 0.03, 1.1e-3 at
0.01 (the per-step rule alone: 0.87, 1.6e-2, 8.8e-3), and at 0.003 the confirmation waits on the
end's float32 round-off (224 rounds). There, pass a window close to ``num_steps`` (window 1000:
the same DDIM run on the 32-d mixture took 15 rounds, worst sample 4.0e-5) or a small tol.
The converged frontier passes the converged prefix plus one each round, so
rounds <= ``num_steps``; the run ends when it reaches the last step. The window slides to the
frontier but never past the last ``p`` steps: where ParaDiGMS lets the window run past the end
(idle slots), here the converged steps still inside it keep being refined by the round's ``p``
evaluations, and a converged step is not tested again. The fixed point is the sequential
trajectory, and ``tol = 0`` reproduces it up to round-off.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import ModelFn, PRNGKey, Sampler
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid
from samplers.parallel import control
from samplers.parallel.mesh import check_mesh, replicate, window_map

UPDATES = ("increments", "states", "jacobi")
SLOPES = ("one", "secant", "tangent", "jacobian")
SLOPE_MAX = 2.0  # slopes are clipped to [0, SLOPE_MAX]: a step may expand x, never flip it
JVP_BATCH = 8  # slope="jacobian": Jacobian columns (JVPs) computed at once
NEWTON_TRUST = 4.0  # slope="jacobian": a sample's Newton update is taken if at most this x the tangent one
# tol=None: every sample within 1e-3 relative error of the sequential run on the test mixtures (module doc)
DEFAULT_TOL = {"ode": 0.3, "sde": 0.1}


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


def time_parallel(sampler: Sampler, window: int, tol: float | None = None, scale=None, *,
                  update: str = "increments", slope: str = "one", mesh=None, window_axis: str = "window",
                  batch_axis: str | None = "batch", confirm: bool = True) -> ParallelSampler:
    """Build the driver: ``window`` steps per round (1 <= window <= num_steps), tolerance
    ``tol >= 0`` relative to the per-step ``scale`` (default 1: absolute) and, with ``confirm``, to
    the final sample's RMS (module doc; the bound needs the window to reach the final sample: take
    ``window`` = num_steps or close to it); ``tol=None`` takes ``DEFAULT_TOL["sde"]`` for a sampler with
    a Gaussian ``transition`` (DDPM, ancestral, multistep SDE solvers), else ``DEFAULT_TOL["ode"]``
    (pass ``DEFAULT_TOL["sde"]`` for a stochastic sampler without one: momentum, PC, time-shift);
    ``scale`` should be ``step_scale(grid[, noise])``; the ``update`` rule,
    the ``slope`` of the increments update (``"one"``, ``"secant"``, ``"tangent"``, ``"jacobian"``: the
    model must be differentiable; ``"jacobian"`` costs d JVPs per point and round, for small d), and an
    optional mesh (``mesh.window_mesh``) whose ``window_axis`` size divides ``window``."""
    if not isinstance(sampler, Sampler):
        raise ValueError(f"sampler must be a samplers.core.Sampler, got {type(sampler).__name__}")
    window = control.check_window(window, sampler.num_steps)
    if tol is None:
        tol = DEFAULT_TOL["ode" if sampler.transition is None else "sde"]
    tol = control.check_tol(tol)
    if not isinstance(confirm, bool):
        raise ValueError(f"confirm must be True or False, got {confirm!r}")
    scale = control.check_scale(scale, sampler.num_steps)
    check_choice("update", update, UPDATES)
    check_choice("slope", slope, SLOPES)
    if slope != "one" and update != "increments":
        raise ValueError(f"slope={slope!r} applies to update='increments' only; use slope='one' with "
                         f"update={update!r}")
    if mesh is None:
        batch_axis = None
    check_mesh(mesh, window, window_axis, batch_axis)
    return ParallelSampler(sampler, window, tol, scale, update, slope, mesh, window_axis, batch_axis, confirm)


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


def _newton_correction(jac, residual):
    """delta_0 = 0, delta_{j+1} = J_j delta_j + r_j per sample (J_j: (p, B, d, d), r_j = T_j.x - x_{j+1}^old
    flattened to d) for all j at once (associative scan of the affine maps). The Newton update in
    residual form, x^new = x^old + delta: at the fixed point r = 0 and no large terms cancel (the
    form x^new = J x^new + (T - J x^old) loses float32 precision through products of Jacobians)."""
    def compose(first, second):
        return second[0] @ first[0], (second[0] @ first[1][..., None])[..., 0] + second[1]

    return jax.lax.associative_scan(compose, (jac, residual.reshape(residual.shape[:2] + (-1,))))[1].reshape(
        residual.shape)


def _increments(window, stepped, slope, jac=None):
    """Picard: x_{j+1} = slope_j x_j + (step(x_j^old) - slope_j x_j^old) (cumulative increments for
    slope = 1), integer counters by cumulative increments, other fields from the stepped state. With
    ``jac`` (p, B, d, d) the Newton update (``_newton_correction``) where it is trusted: per sample,
    finite and its largest correction over the window at most ``NEWTON_TRUST`` times that of the
    ``slope`` update, which is taken elsewhere (both have the sequential run as their fixed point)."""
    base = jax.tree.map(lambda a: a[:1], window)
    prev = jax.tree.map(lambda a: a[:-1], window)
    leaf = lambda b, new, old: _cumulative(b, new, old) if jnp.issubdtype(new.dtype, jnp.integer) else new
    x = _linear_recurrence(window.x[0], slope, stepped.x - slope * prev.x)
    if jac is not None:
        old = window.x[1:]
        newton = old + _newton_correction(jac, stepped.x - old)
        size = lambda d: jnp.max(jnp.mean(jnp.square(d.reshape(d.shape[:2] + (-1,))), axis=-1), axis=0)  # (B,)
        trusted = jnp.isfinite(size(newton - old)) & (size(newton - old) <= NEWTON_TRUST**2 * size(x - old))
        x = jnp.where(trusted.reshape((1, -1) + (1,) * (x.ndim - 2)), newton, x)
    return jax.tree.map(leaf, base, stepped, prev).replace(x=x)


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


def parallel_sample(par: ParallelSampler, model_fn: ModelFn, x, key: PRNGKey | None = None, tol=None):
    """Run ``par`` from ``x``: returns ``(final_state, ParallelStats)``; the final state matches
    ``samplers.core.sample(par.sampler, model_fn, x, key)`` to within the tolerance. Jit it with
    ``jax.jit(parallel_sample, static_argnums=(0, 1))``; ``tol`` (a traced scalar >= 0) overrides
    ``par.tol`` without recompiling, e.g. to sweep tolerances."""
    smp, p, update = par.sampler, par.window, par.update
    n = smp.num_steps
    if key is None:
        key = jax.random.PRNGKey(0)
    init_key, step_key = jax.random.split(key)
    keys = jax.random.split(step_key, n)
    state0 = smp.init(x, key=init_key, model_fn=model_fn)
    history = set(_float_fields(state0)) != {"x"}
    if history or update == "states":
        stepper = _recording_step(smp.step, model_fn)
    else:
        stepper = lambda s, k: (smp.step(s, k, model_fn), None)
    stepper = window_map(stepper, par.mesh, par.window_axis, par.batch_axis)
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
        pairs = (inputs.x, stepped.x)
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
        elif par.slope == "jacobian":  # the tangent slope along the last change, from the Jacobian
            direction = jnp.where(known.reshape((-1,) + (1,) * (inputs.x.ndim - 1)), inputs.x - x_last, 0.0)
            d_step = (tangent @ direction.reshape(direction.shape[:2] + (-1, 1)))[..., 0].reshape(direction.shape)
            slope = _rayleigh(direction, d_step, known)
        else:
            slope = jnp.ones((), inputs.x.dtype)
        jac = tangent if par.slope == "jacobian" else None
        return _increments(states, stepped, slope, jac), (inputs.x, stepped.x)

    def body(carry):
        states, s, f, rounds, calls, _, positions, memory = carry
        idx = s + offsets[:-1]  # step of each evaluated point
        inputs = jax.tree.map(lambda a: a[:-1], states).replace(i=idx.astype(states.i.dtype))
        tangent = None
        if par.slope == "tangent":  # d step(x).x along the last round's change of x (0 for new points)
            x_last, _, known = memory
            direction = jnp.where(known.reshape((p,) + (1,) * (inputs.x.ndim - 1)), inputs.x - x_last, 0.0)
            (stepped, outputs), (d_stepped, _) = jax.jvp(
                lambda x: stepper(inputs.replace(x=x), keys[idx]), (inputs.x,), (direction,))
            tangent = (direction, d_stepped.x)
        elif par.slope == "jacobian":  # J_j = d step(x_j).x / d x_j per sample: one JVP per coordinate
            step_x = lambda x: stepper(inputs.replace(x=x), keys[idx])
            stepped, outputs = step_x(inputs.x)
            dim = int(np.prod(inputs.x.shape[2:]))
            basis = jnp.eye(dim, dtype=inputs.x.dtype).reshape((dim,) + inputs.x.shape[2:])
            cols = jax.lax.map(lambda e: jax.jvp(lambda x: step_x(x)[0].x, (inputs.x,),
                                                 (jnp.broadcast_to(e, inputs.x.shape),))[1],
                               basis, batch_size=JVP_BATCH)  # bounded memory: JVP_BATCH directions at once
            tangent = jnp.moveaxis(cols.reshape((dim,) + inputs.x.shape[:2] + (dim,)), 0, -1)
        else:
            stepped, outputs = stepper(inputs, keys[idx])
        guesses, pairs = rebuild(states, inputs, stepped, outputs, keys[idx], memory, tangent)
        new = at(jax.tree.map(lambda a, g: jnp.concatenate([a[:1], g]), states, guesses), s)
        change = _change(new, states)
        g2_j = g2[idx]
        calls = calls + jnp.sum(stepped.nfe - inputs.nfe, dtype=jnp.int32)
        residual = jnp.max(jnp.sqrt(change / g2_j)).astype(jnp.float32).astype(jnp.float32)
        # converged: points up to the frontier f (once converged, refined since) and those whose change
        # is within tolerance; the frontier passes the converged prefix plus one (control.stride)
        # end-to-end confirmation: new points are accepted only in a round that moves the window's last
        # point (the final sample once the window reaches the end) by at most tol relative to its RMS
        end_ok = True
        if par.confirm:
            end_scale2 = jnp.mean(jnp.square(new.x[p]).astype(jnp.float32))
            end_ok = control.mean_square(new.x[p] - states.x[p]) <= tol2 * end_scale2
        f = s + control.stride((end_ok & (change <= tol2 * g2_j)) | (s + offsets[1:] <= f), n - s)
        shift = jnp.clip(f - s, 0, n - p - s)  # slide to the frontier, never past the last p steps
        slide = jnp.minimum(offsets + shift, p)  # slid window; new points start from the last known state
        states = at(jax.tree.map(lambda a: a[slide], new), s + shift)
        positions = positions.at[rounds].set(s)
        kept = offsets[:-1] + shift  # evaluated points that stay in the window, at their new places
        memory = (pairs[0][jnp.minimum(kept, p - 1)], pairs[1][jnp.minimum(kept, p - 1)], kept < p)
        return states, s + shift, f, rounds + 1, calls, residual, positions, memory

    states = at(jax.tree.map(lambda a: jnp.broadcast_to(a, (p + 1,) + a.shape), state0), jnp.int32(0))
    zero = jnp.zeros((), jnp.int32)
    memory = (states.x[:-1], states.x[:-1], jnp.zeros((p,), bool))
    carry = (states, zero, zero, zero, zero, jnp.zeros((), jnp.float32), jnp.full((n,), -1, jnp.int32), memory)
    states, s, _, rounds, calls, residual, positions, _ = jax.lax.while_loop(lambda c: c[2] < n, body, carry)
    final = jax.tree.map(lambda a: a[n - s], states)
    return replicate((final, ParallelStats(rounds, calls, residual, positions)), par.mesh)

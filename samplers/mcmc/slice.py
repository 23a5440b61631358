"""Gibbsian polar slice sampling (Schär, Habeck & Rudolf, ICML 2023).

Write x = c + r theta (radius r > 0, direction theta on the sphere S^{d-1}, centre
c) and p_1(x) = r^{d-1} p(x). One step is a Gibbs sweep of the polar slice sampler:

1. level: log T = log p_1(x) - E,  E ~ Exp(1)  (T uniform on (0, p_1(x)));
2. direction: on the great circle theta cos(w) + v sin(w) through theta (v a
   uniform unit direction orthogonal to theta), the geodesic shrinkage procedure
   (as elliptical slice sampling): w ~ U(0, 2 pi) in the bracket [w - 2 pi, w],
   accept when log p_1(c + r theta') > log T, else shrink the bracket towards 0;
3. radius: a uniform draw from {r > 0 : p_1(c + r theta) > T} by Neal's (2003)
   stepping out (width ``width``, at most ``max_step_out`` widths) and
   shrinkage; r <= 0 counts as outside the slice.

Each shrinkage loop is a ``lax.while_loop`` over the batch of chains with at
most ``max_shrink`` proposals; a chain that exhausts it keeps its current
direction or radius (always in the slice), which leaves the kernel reversible.
Every loop iteration is one model call on the batch, so ``nfe`` in the state is
exact and ``Sampler.nfe`` an upper bound. Needs a log-density and d >= 2.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import check_target


@struct.dataclass
class SliceState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    logdensity: jax.Array  # (B,)


def _shrink_loop(update, max_iter: int, key, init: dict):
    """Iterate ``update(carry, key_it) -> carry`` (one model call each) until every chain's
    ``carry["done"]`` or ``max_iter`` calls; returns (carry, number of calls)."""
    def cond(c):
        carry, it = c
        return (it < max_iter) & ~jnp.all(carry["done"])

    def body(c):
        carry, it = c
        return update(carry, jax.random.fold_in(key, it)), it + 1

    return jax.lax.while_loop(cond, body, (init, jnp.zeros((), jnp.int32)))


def gibbs_polar_slice(num_steps: int, width: float = 1.0, max_shrink: int = 50, max_step_out: int = 10,
                      center=None, target: str = "logdensity", t: float = 0.0) -> Sampler:
    """Gibbsian polar slice sampler; ``width`` is the radius stepping-out width (the
    one tuning parameter; err large), ``center`` the polar origin (a chain's shape)."""
    n = check_int("num_steps", num_steps)
    w = check_positive("width", width)
    max_shrink = check_int("max_shrink", max_shrink)
    m = check_int("max_step_out", max_step_out)
    check_target(target, "gibbs_polar_slice", adjusted=True, why="slice sampling compares density levels")
    c_np = None if center is None else np.asarray(center, np.float64)
    per_step = 2 * max_shrink + 2 * (m - 1)

    def density(model_fn, flat, shape):
        return model_fn(flat.reshape(shape), jnp.asarray(t, flat.dtype))

    def init(x, key=None, model_fn=None):
        del key
        d = math.prod(x.shape[1:])
        if d < 2:
            raise ValueError(f"gibbs_polar_slice needs chains of dimension >= 2, got shape {x.shape[1:]}")
        if c_np is not None and c_np.shape not in ((), x.shape[1:]):
            raise ValueError(f"center has shape {c_np.shape}, expected () or a chain's shape {x.shape[1:]}")
        return SliceState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.ones((), jnp.int32),
                          logdensity=model_fn(x, jnp.asarray(t, x.dtype)))

    def step(state, key, model_fn):
        x, dt, b = state.x, state.x.dtype, state.x.shape[0]
        flat = x.reshape(b, -1)
        d = flat.shape[1]
        c = jnp.zeros((d,), dt) if c_np is None else jnp.broadcast_to(jnp.asarray(c_np, dt).reshape(-1), (d,))
        v = flat - c
        r = jnp.linalg.norm(v, axis=1)
        theta = v / r[:, None]
        k_level, k_dir, k_w, k_u, k_j, k1, k2 = jax.random.split(key, 7)
        log_r = lambda rr: (d - 1) * jnp.log(jnp.maximum(rr, jnp.finfo(dt).tiny))
        log_t = state.logdensity + log_r(r) - jax.random.exponential(k_level, (b,), dt)
        inside = lambda rr, ld: (rr > 0) & (ld + log_r(rr) > log_t)
        at = lambda rr, th: density(model_fn, c + rr[:, None] * th, x.shape)

        # 2. direction: geodesic shrinkage on the great circle through theta.
        y = jax.random.normal(k_dir, (b, d), dt)
        y = y - jnp.sum(y * theta, 1, keepdims=True) * theta
        y = y / jnp.linalg.norm(y, axis=1, keepdims=True)
        omega = 2 * jnp.pi * jax.random.uniform(k_w, (b,), dt)
        arc = lambda om: jnp.cos(om)[:, None] * theta + jnp.sin(om)[:, None] * y

        def update_dir(cr, k):
            om = cr["omega"]
            ld = at(r, arc(om))
            ok = inside(r, ld) & ~cr["done"]
            lo = jnp.where(om < 0, om, cr["lo"])
            hi = jnp.where(om < 0, cr["hi"], om)
            return dict(omega=lo + (hi - lo) * jax.random.uniform(k, (b,), dt), lo=lo, hi=hi, done=cr["done"] | ok,
                        theta=jnp.where(ok[:, None], arc(om), cr["theta"]), ld=jnp.where(ok, ld, cr["ld"]))

        cr, calls_dir = _shrink_loop(update_dir, max_shrink, k1, dict(
            omega=omega, lo=omega - 2 * jnp.pi, hi=omega, done=jnp.zeros((b,), bool), theta=theta,
            ld=state.logdensity))
        theta, ld_cur = cr["theta"], cr["ld"]

        # 3. radius: stepping out (Neal 2003, Fig. 3) and shrinkage.
        lo = r - w * jax.random.uniform(k_u, (b,), dt)
        hi = lo + w
        j_left = jnp.floor(m * jax.random.uniform(k_j, (b,), dt)).astype(jnp.int32)

        def step_out(end, budget, sign):
            def cond(c):
                return jnp.any(c[2])

            def body(c):
                end, budget, active, calls = c
                grow = active & inside(end, at(end, theta))
                budget = budget - grow
                return end + sign * w * grow, budget, grow & (budget > 0), calls + 1

            init = (end, budget, budget > 0, jnp.zeros((), jnp.int32))
            end, _, _, calls = jax.lax.while_loop(cond, body, init)
            return end, calls

        lo, calls_lo = step_out(lo, j_left, -1.0)
        hi, calls_hi = step_out(hi, m - 1 - j_left, 1.0)

        def update_rad(cr, k):
            rr = cr["lo"] + (cr["hi"] - cr["lo"]) * jax.random.uniform(k, (b,), dt)
            ld = at(rr, theta)
            ok = inside(rr, ld) & ~cr["done"]
            below = rr < r
            return dict(lo=jnp.where(below, rr, cr["lo"]), hi=jnp.where(below, cr["hi"], rr), done=cr["done"] | ok,
                        r=jnp.where(ok, rr, cr["r"]), ld=jnp.where(ok, ld, cr["ld"]))

        cr, calls_rad = _shrink_loop(update_rad, max_shrink, k2, dict(
            lo=lo, hi=hi, done=jnp.zeros((b,), bool), r=r, ld=ld_cur))
        x_new = (c + cr["r"][:, None] * theta).reshape(x.shape)
        calls = calls_dir + calls_lo + calls_hi + calls_rad
        return SliceState(x=x_new, i=state.i + 1, nfe=state.nfe + calls, logdensity=cr["ld"])

    return Sampler(init=init, step=step, num_steps=n, nfe=1 + n * per_step)

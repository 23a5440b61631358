"""DPM-Solver-v3 (Zheng, Lu, Bao & Zhu 2023, "DPM-Solver-v3: Improved Diffusion ODE Solver with
Empirical Model Statistics", NeurIPS 2023; reference code github.com/thu-ml/DPM-Solver-v3).

In lambda = log(alpha / sigma) the probability-flow ODE of a noise prediction eps is
dx/dlambda = (alpha'/alpha) x - sigma eps. With per-dimension *empirical model statistics*
l, s, b on a lambda grid, write N = sigma eps - l x and f = N / alpha (Eq. 6-9):

    dx/dlambda = (alpha'/alpha - l) x - N,
    l_lambda   = diag E[grad_x (sigma eps)]            (the part of N linear in x, Eq. 8),
    s, b       = argmin E |f' - s f - b|^2             (f' = df/dlambda along the ODE, Eq. 9),

so that g = e^{-(S - S_s)} f - e^{S_s} (B - B_s) (L, S the integrals of l, s; B of e^{-S} b) changes
slowly; g is expanded in lambda (Taylor, orders 1-3) and the rest integrated exactly (Eq. 11):

    x_t = (alpha_t/alpha_s) e^{L_s-L_t} x_s - alpha_t e^{-L_t-S_s} (I_t - I_s) g_s
          - alpha_t e^{-L_t} (C_t - C_s - B_s (I_t - I_s))
          - alpha_t e^{L_s-L_t} sum_k g_s^(k) int_s^t e^{L+S-L_s-S_s} (lambda - lambda_s)^k / k! dlambda,

with I = int e^{L+S}, C = int e^{L+S} B, all integrals by the trapezoid rule on the statistics grid
(cumulative from its first point), as the reference code does. l = 1, s = b = 0 is DPM-Solver++
(data prediction, Taylor-form multistep); l = 0, s = -1, b = 0 is DPM-Solver (noise prediction).

* ``model_statistics`` estimates l, s, b from any ``model_fn`` and a sample of clean data
  (App. C.1.1): on a uniform lambda grid, x = alpha x0 + sigma z; l by Hutchinson's estimator
  (Rademacher v, one JVP: E[v * J v] = diag J); l' by central differences over +-``smooth`` grid
  points; f' by one JVP of sigma eps / alpha along (dx/dlambda, 1) in (x, lambda); s, b by the
  per-dimension least-squares regression of f' on f. The result is an artefact saved and loaded with
  orbax (``save_statistics`` / ``load_statistics``).
* ``dpm_solver_v3`` is the multistep solver (Alg. 1 of the paper, ``DPM_Solver_v3.sample`` of the
  reference code): the step times snap to the nearest statistics grid point; the predictor of order
  p = min(order, i + 1) (``lower_order_final``: also at most N - i) takes g's derivatives from the
  last p values by solving the Vandermonde system (``predictor_pseudo``: Newton divided differences,
  the k-th derivative from the last k + 1 values only -- the "pseudo-order"); the corrector
  re-does step i-1 -> i with the new output as a node, keeping N fixed (so the stored f are never
  changed, only x_i), with order p_(i-1) + 1 and pseudo differences (``corrector_pseudo``, the
  reference default) or p_(i-1); ``half`` corrects only where the normalised time
  (t - t_min)/(t_max - t_min) > 1/2, as the reference code's ``half`` option (its README says the
  opposite, t <= 0.5; the code is followed). A final step to sigma = 0 (lambda = +inf, outside any
  statistics grid) returns the data prediction x0 = ((1 - l) x)/alpha - f at the last call
  (first order, as every solver's last step to sigma = 0).

Every coefficient depends on the grid and the statistics only, so the step is
x_(i+1) = A_i * x_i + sum_j W_(i,j) * f_(i-j) + c_i with per-dimension tables (A, W, c and the
corrector's) folded together once, in float64 numpy, at build time.
"""
from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import struct

from samplers.core import Sampler, take_rows
from samplers.grids import TimeGrid
from samplers.ode.common import check_choice, check_grid, check_order, combine, predictor
from samplers.schedules import Schedule

STATS = ("l", "s", "b")
RIDGE = 1e-8  # Var(f) floor, relative to E[f^2]: keeps s finite where f is (nearly) deterministic


# -- statistics -------------------------------------------------------------------------------------

def _point_fns(schedule: Schedule, model_fn: Callable, predicts: str):
    """(alpha, sigma, dlog(alpha)/dlambda) at lambda and F(x, lambda) = sigma eps(x, t(lambda)) / alpha."""
    eps_fn = predictor(schedule, predicts, "eps")(model_fn)

    def coefs(lam):
        log_alpha = lambda u: schedule.log_alpha(schedule.t_from_lambda(u))
        la, rho = jax.jvp(log_alpha, (lam,), (jnp.ones_like(lam),))
        alpha = jnp.exp(la)
        return alpha, alpha * jnp.exp(-lam), rho

    def F(x, lam):  # sigma / alpha = e^{-lambda}
        return jnp.exp(-lam).astype(x.dtype) * eps_fn(x, schedule.t_from_lambda(lam).astype(x.dtype))

    return coefs, F, eps_fn


def _smoothed_derivative(lam: np.ndarray, l: np.ndarray, w: int) -> np.ndarray:
    """dl/dlambda by central differences over +-w grid points (one-sided, narrower, at the ends)."""
    k = np.arange(len(lam))
    hi, lo = np.minimum(k + w, len(lam) - 1), np.maximum(k - w, 0)
    shape = (-1,) + (1,) * (l.ndim - 1)
    return (l[hi] - l[lo]) / (lam[hi] - lam[lo]).reshape(shape).astype(l.dtype)


def model_statistics(schedule: Schedule, model_fn: Callable, data, key, *, predicts: str = "eps",
                     num_points: int = 1200, t_start: float | None = None, t_end: float | None = None,
                     batch_size: int | None = None, smooth: int = 5) -> dict:
    """The empirical model statistics of ``model_fn`` from clean samples ``data`` (n, *shape).

    ``num_points`` lambda points uniform from lambda(t_start) (the schedule's t_max by default) to
    lambda(t_end) (t_min); at each, every sample is noised afresh (x = alpha x0 + sigma z) and the model
    called in chunks of ``batch_size`` (all n at once by default). Returns the artefact
    {"lam" (M,), "l", "s", "b" (M, *shape), "t_start", "t_end"} (module docstring)."""
    data = jnp.asarray(data)
    n = data.shape[0]
    batch_size = n if batch_size is None else batch_size
    if not isinstance(batch_size, int) or batch_size < 1 or n % batch_size:
        raise ValueError(f"batch_size must be a positive integer dividing the {n} data samples, got {batch_size!r}")
    if not isinstance(num_points, int) or num_points < 2 * smooth + 2:
        raise ValueError(f"num_points must be an integer >= 2 * smooth + 2 = {2 * smooth + 2}, got {num_points!r}")
    if not isinstance(smooth, int) or smooth < 1:
        raise ValueError(f"smooth must be an integer >= 1, got {smooth!r}")
    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_t(np.array([t0, t1]), "t_start/t_end")
    with np.errstate(divide="ignore"):
        lam0, lam1 = float(schedule.lambda_(np.float64(t0))), float(schedule.lambda_(np.float64(t1)))
    if not (np.isfinite(lam0) and np.isfinite(lam1) and lam1 > lam0):
        raise ValueError(f"t_start/t_end: lambda must be finite and increase from t_start={t0:g} to t_end={t1:g} "
                         f"({schedule.name} schedule), got {lam0:g} -> {lam1:g}")
    lam = np.linspace(lam0, lam1, num_points)
    coefs, F, eps_fn = _point_fns(schedule, model_fn, predicts)
    chunks = data.reshape((n // batch_size, batch_size) + data.shape[1:])
    dt = data.dtype

    def noised(lam_k, key_k, j, x0):
        alpha, sigma, rho = (c.astype(dt) for c in coefs(lam_k))
        z = jax.random.normal(jax.random.fold_in(key_k, j), x0.shape, dt)
        return alpha * x0 + sigma * z, alpha, sigma, rho

    def diag_pass(lams, keys):
        def point(args):
            lam_k, key_k = args

            def chunk(acc, jx):
                j, x0 = jx
                x, _, sigma, _ = noised(lam_k, key_k, j, x0)
                v = jax.random.rademacher(jax.random.fold_in(key_k, -1 - j), x.shape, dt)
                t = schedule.t_from_lambda(lam_k).astype(dt)
                _, jv = jax.jvp(lambda y: sigma * eps_fn(y, t), (x,), (v,))
                return acc + jnp.sum(v * jv, axis=0), None

            acc, _ = jax.lax.scan(chunk, jnp.zeros(data.shape[1:], dt), (jnp.arange(len(chunks)), chunks))
            return acc / n

        return jax.lax.map(point, (lams, keys))

    def regression_pass(lams, keys, ls, dls):
        def point(args):
            lam_k, key_k, l, dl = args

            def chunk(carry, jx):
                shift, sums = carry
                j, x0 = jx
                x, alpha, sigma, rho = noised(lam_k, key_k, j, x0)
                eps = eps_fn(x, schedule.t_from_lambda(lam_k).astype(dt))
                dx = rho * x - sigma * eps  # the PF-ODE in lambda
                Fx, dF = jax.jvp(F, (x, lam_k.astype(dt)), (dx, jnp.ones((), dt)))
                f = Fx - l * x / alpha
                df = dF - (dl * x + l * dx - rho * l * x) / alpha
                shift = jnp.where(j == 0, jnp.stack([f.mean(0), df.mean(0)]), shift)  # shifted sums: stable variance
                u, w = f - shift[0], df - shift[1]
                return (shift, sums + jnp.stack([u.sum(0), w.sum(0), (u * u).sum(0), (u * w).sum(0)])), None

            init = (jnp.zeros((2,) + data.shape[1:], dt), jnp.zeros((4,) + data.shape[1:], dt))
            (shift, sums), _ = jax.lax.scan(chunk, init, (jnp.arange(len(chunks)), chunks))
            mu, mw, uu, uw = sums / n
            var, cov = uu - mu * mu, uw - mu * mw
            ef = shift[0] + mu
            s = cov / (var + RIDGE * (var + ef * ef))
            return s, shift[1] + mw - s * ef

        return jax.lax.map(point, (lams, keys, ls, dls))

    @jax.jit
    def both(key):  # one compile for the two passes
        k_diag, k_reg = jax.random.split(key)
        lams = jnp.asarray(lam, dt)
        l = diag_pass(lams, jax.random.split(k_diag, num_points))
        s, b = regression_pass(lams, jax.random.split(k_reg, num_points), l, _smoothed_derivative(lam, l, smooth))
        return l, s, b

    l, s, b = (np.asarray(v, np.float64) for v in both(key))
    return {"lam": lam, "l": l, "s": s, "b": b, "t_start": t0, "t_end": t1}


def save_statistics(path: str, stats: dict) -> None:
    """Write an artefact of ``model_statistics`` (arrays with orbax's StandardSave, end times as JSON)."""
    arrays = {k: np.asarray(stats[k], np.float64) for k in ("lam",) + STATS}
    meta = {k: float(stats[k]) for k in ("t_start", "t_end")}
    args = ocp.args.Composite(stats=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        ckpt.save(path, args=args, force=True)


def load_statistics(path: str) -> dict:
    """An artefact written by ``save_statistics``."""
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
        out = ckpt.restore(path, args=ocp.args.Composite(stats=ocp.args.StandardRestore(),
                                                         meta=ocp.args.JsonRestore()))
    return {**{k: np.asarray(v, np.float64) for k, v in out["stats"].items()}, **out["meta"]}


# -- the solver -------------------------------------------------------------------------------------

def _cumtrapz(lam: np.ndarray, y: np.ndarray) -> np.ndarray:
    """int_{lam_0}^{lam_k} y dlambda by the trapezoid rule, for every k (leading axis: the grid)."""
    dl = np.diff(lam).reshape((-1,) + (1,) * (y.ndim - 1))
    return np.concatenate([np.zeros_like(y[:1]), np.cumsum(0.5 * dl * (y[1:] + y[:-1]), axis=0)])


class _Integrals:
    """The cumulative integrals L, S, I, B, C of the statistics (module docstring), float64."""

    def __init__(self, stats: dict):
        self.lam = np.asarray(stats["lam"], np.float64)
        self.l, s, b = (np.asarray(stats[k], np.float64) for k in STATS)
        self.L, self.S = _cumtrapz(self.lam, self.l), _cumtrapz(self.lam, s)
        self.I = _cumtrapz(self.lam, np.exp(self.L + self.S))
        self.B = _cumtrapz(self.lam, np.exp(-self.S) * b)
        self.C = _cumtrapz(self.lam, np.exp(self.L + self.S) * self.B)

    def moment(self, i_s: int, i_t: int, k: int) -> np.ndarray:
        """int_s^t e^{L+S-L_s-S_s} (lambda - lambda_s)^k / k! dlambda on the grid points i_s..i_t."""
        sl = slice(i_s, i_t + 1)
        y = np.exp(self.L[sl] + self.S[sl] - self.L[i_s] - self.S[i_s])
        y = y * ((self.lam[sl] - self.lam[i_s]) ** k / math.factorial(k)).reshape((-1,) + (1,) * (y.ndim - 1))
        return _cumtrapz(self.lam[sl], y)[-1]


def derivative_weights(lams, pseudo: bool) -> np.ndarray:
    """D (n, n+1): g^(k)(lambda_0) ~ sum_j D[k-1, j] g(lambda_j), k = 1..n, from the n+1 nodes ``lams``
    (first: the expansion point). ``pseudo=False``: the derivatives of the interpolating polynomial
    (Vandermonde solve); ``pseudo=True``: k! times the divided difference g[lambda_0..lambda_k]."""
    lams = np.asarray(lams, np.float64)
    n = len(lams) - 1
    if pseudo:
        table, out = np.eye(n + 1), []
        for i in range(1, n + 1):
            table = (table[:-1] - table[1:]) / (lams[:n + 1 - i] - lams[i:]).reshape(-1, 1)
            out.append(table[0] * math.factorial(i))
        return np.array(out).reshape(n, n + 1)
    R = np.stack([(lams[1:] - lams[0]) ** i for i in range(1, n + 1)], axis=1)
    Rinv = np.linalg.inv(R)
    D = np.zeros((n, n + 1))
    D[:, 1:] = Rinv
    D[:, 0] = -Rinv.sum(axis=1)
    return D * np.array([math.factorial(i) for i in range(1, n + 1)])[:, None]


def update_coefs(ints: _Integrals, alpha: np.ndarray, nodes, i_t: int, pseudo: bool):
    """(a, [w_j], c) of x_t = a x_s + sum_j w_j f_j + c for the step from stats index nodes[0] = s to
    i_t, Taylor-expanding g at s from the nodes' f (order len(nodes)); ``alpha`` per stats index."""
    i_s = nodes[0]
    L, S, B = ints.L, ints.S, ints.B
    a = alpha[i_t] / alpha[i_s] * np.exp(L[i_s] - L[i_t])
    dI = ints.I[i_t] - ints.I[i_s]
    gam = [-alpha[i_t] * np.exp(-L[i_t] - S[i_s]) * dI]  # weight of g_s
    gam += [0.0 * a] * (len(nodes) - 1)
    c = -alpha[i_t] * np.exp(-L[i_t]) * (ints.C[i_t] - ints.C[i_s] - B[i_s] * dI)
    if len(nodes) > 1:
        D = derivative_weights(ints.lam[list(nodes)], pseudo)
        for k in range(1, len(nodes)):
            e = -alpha[i_t] * np.exp(L[i_s] - L[i_t]) * ints.moment(i_s, i_t, k)
            gam = [gam[j] + e * D[k - 1, j] for j in range(len(nodes))]
    # g_j = e^{S_s - S_j} f_j - e^{S_s} (B_j - B_s)
    w = [gam[j] * np.exp(S[i_s] - S[j_]) for j, j_ in enumerate(nodes)]
    c = c - sum(gam[j] * np.exp(S[i_s]) * (B[j_] - B[i_s]) for j, j_ in enumerate(nodes))
    return a, w, c


def snap(grid: TimeGrid, stats: dict) -> np.ndarray:
    """The statistics index of every finite-lambda grid point (the nearest lambda; the reference's
    ``convert_to_indexes``), checked to lie inside the statistics grid and to stay distinct."""
    lam = np.asarray(stats["lam"], np.float64)
    pts = grid.lam[:-1] if grid.final_zero else grid.lam
    span = lam[-1] - lam[0]
    tol = 0.5 * span / (len(lam) - 1)
    if np.any(pts < lam[0] - tol) or np.any(pts > lam[-1] + tol):
        raise ValueError(f"grid: its log-SNR {pts.min():.4g}..{pts.max():.4g} leaves the statistics' grid "
                         f"{lam[0]:.4g}..{lam[-1]:.4g} (t_start/t_end of model_statistics)")
    idx = np.rint((len(lam) - 1) * (pts - lam[0]) / span).astype(int)
    if np.any(np.diff(idx) <= 0):
        raise ValueError(f"grid: two of its points snap to the same statistics point (indices {idx.tolist()}); "
                         f"use fewer steps or statistics with more points")
    return idx


@struct.dataclass
class V3State:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    hist: jax.Array | None  # past f = N / alpha, most recent first
    x_prev: jax.Array | None  # x_{i-1}, the corrector's base point


def v3_tables(schedule: Schedule, grid: TimeGrid, stats: dict, order: int, predictor_pseudo: bool,
              corrector: bool, corrector_pseudo: bool, half: bool, lower_order_final: bool):
    """Per-step tables (snapped times t, alpha, sigma, l, A, W (N, K, *shape), c, and the corrector's
    Ac, Wc (N, K + 1, *shape), cc, active) for ``dpm_solver_v3``; K = 3 past f at most."""
    idx = snap(grid, stats)
    ints = _Integrals(stats)
    with np.errstate(divide="ignore"):
        t_stats = np.asarray(schedule.t_from_lambda(ints.lam), np.float64)
    alpha = np.asarray(schedule.alpha(t_stats), np.float64)
    sigma = np.asarray(schedule.sigma(t_stats), np.float64)
    n, shape = grid.num_steps, ints.l.shape[1:]
    K = 3
    A, c = np.zeros((n,) + shape), np.zeros((n,) + shape)
    W = np.zeros((n, K) + shape)
    Ac, cc, Wc = np.zeros((n,) + shape), np.zeros((n,) + shape), np.zeros((n, K + 1) + shape)
    active = np.zeros(n, bool)
    orders = np.minimum(order, np.arange(1, n + 1))
    if lower_order_final:
        orders = np.minimum(orders, n - np.arange(n))
    if grid.final_zero:
        orders[-1] = 1
    t_norm = (t_stats[idx] - schedule.t_min) / (schedule.t_max - schedule.t_min)  # snapped times, as the reference
    for i in range(n):
        if corrector and i > 0 and (not half or t_norm[i] > 0.5):
            p = int(orders[i - 1]) + int(corrector_pseudo)
            if p > 1:  # re-do step i-1 -> i with nodes [i-1, i, i-2, ...]; slots: [f_i, f_{i-1}, f_{i-2}, ...]
                steps = [i - 1, i] + [i - 1 - k for k in range(1, p - 1)]
                Ac[i], w, cc[i] = update_coefs(ints, alpha, [idx[j] for j in steps], idx[i], corrector_pseudo)
                for j, wj in zip(steps, w):
                    Wc[i, i - j] = wj
                active[i] = True
        if grid.final_zero and i == n - 1:  # to sigma = 0: x0 = (1 - l) x / alpha - f
            A[i], W[i, 0] = (1.0 - ints.l[idx[i]]) / alpha[idx[i]], -1.0
            continue
        steps = [i - k for k in range(int(orders[i]))]
        A[i], w, c[i] = update_coefs(ints, alpha, [idx[j] for j in steps], idx[i + 1], predictor_pseudo)
        for j, wj in zip(steps, w):
            W[i, i - j] = wj
    at = idx[:n]  # the model-call points
    return (t_stats[at], alpha[at], sigma[at], ints.l[at]), (A, W, c), (Ac, Wc, cc, active)


def dpm_solver_v3(schedule: Schedule, grid: TimeGrid, predicts: str = "eps", *, stats: dict | None = None,
                  order: int = 3, predictor_pseudo: bool = False, corrector: bool = True,
                  corrector_pseudo: bool = True, half: bool = False, lower_order_final: bool = True) -> Sampler:
    """DPM-Solver-v3 of ``order`` (1-3) on ``grid`` (its times snapped to the statistics grid) with the
    statistics ``stats`` of ``model_statistics`` / ``load_statistics``; one model call a step. The
    defaults are the reference code's (predictor without, corrector with pseudo-order)."""
    check_grid(grid)
    if not isinstance(stats, dict) or not all(k in stats for k in ("lam",) + STATS):
        raise ValueError("stats must be the artefact of model_statistics / load_statistics (keys lam, l, s, b)")
    order = check_order(order, (1, 2, 3))
    for name, value in (("predictor_pseudo", predictor_pseudo), ("corrector", corrector),
                        ("corrector_pseudo", corrector_pseudo), ("half", half),
                        ("lower_order_final", lower_order_final)):
        check_choice(name, value, (True, False))
    (t, alpha, sigma, l), (A, W, c), (Ac, Wc, cc, active) = v3_tables(
        schedule, grid, stats, order, predictor_pseudo, corrector, corrector_pseudo, half, lower_order_final)
    use_corr = bool(active.any())
    depth = W.shape[1] - 1 + int(use_corr)
    eps_fn = predictor(schedule, predicts, "eps")
    tables = (t, alpha, sigma, l, A, W, c) + ((Ac, Wc, cc, active.astype(np.float64)) if use_corr else ())

    def init(x, key=None, model_fn=None):
        del key, model_fn
        z = jnp.zeros((), jnp.int32)
        return V3State(x=x, i=z, nfe=z, hist=jnp.zeros((depth,) + x.shape, x.dtype),
                       x_prev=x if use_corr else None)

    def step(state, key, model_fn):
        del key
        x, i, dt = state.x, state.i, state.x.dtype
        ti, ai, si, li, a, w, ci, *corr = take_rows(i, dt, *tables)
        eps = eps_fn(model_fn)(x, ti)
        f = (si * eps - li * x) / ai  # N / alpha; kept by the corrector (N fixed)
        past = [state.hist[j] for j in range(depth)]
        if use_corr:
            ac, wc, cc_i, on = corr
            xc = ac * state.x_prev + combine(wc, [f] + past) + cc_i
            x = jnp.where(on > 0, xc, x)
        hist = [f] + past
        nxt = a * x + combine(w, hist[:W.shape[1]]) + ci
        return V3State(x=nxt, i=i + 1, nfe=state.nfe + 1, hist=jnp.stack(hist[:depth]),
                       x_prev=x if use_corr else None)

    return Sampler(init=init, step=step, num_steps=grid.num_steps, nfe=grid.num_steps)

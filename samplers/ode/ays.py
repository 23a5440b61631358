"""Align Your Steps (Sabour et al. 2024, "Align Your Steps: Optimizing Sampling Schedules in Diffusion
Models"): time grids from a Girsanov KL upper bound (KLUB), and the closed form for Gaussian data.

In VE/EDM variables (y = x / alpha, s = sigma / alpha, ``D`` the model's x0 prediction) the reverse SDE
dy = -2 s grad log p ds + sqrt(2 s) dw with grad log p = (D(y, s) - y) / s^2 is compared with the
solver's linearisation, whose denoiser is frozen over each step at its start, D(y_{s_i}, s_i) for s in
[s_{i+1}, s_i]. Their drifts differ by 2 (D(y_s, s) - D(y_{s_i}, s_i)) / s, and Girsanov's theorem bounds
the KL divergence of the two path measures by

    KLUB = sum_i int_{s_{i+1}}^{s_i} E || D(y_s, s) - D(y_{s_i}, s_i) ||^2 / s^3 ds,

with y_s = x_0 + s eps and y_{s_i} = y_s + sqrt(s_i^2 - s^2) z on one forward path (x_0 from the data).
``klub`` estimates each interval's term by Gauss-Legendre quadrature in log s over fixed noise (common
random numbers, so the estimate is a deterministic function of the grid); ``optimise_grid`` moves the
inner points by coordinate descent (each point over a log-spaced set of candidates between its
neighbours, the two intervals it touches re-estimated), with early stopping when a sweep gains less than
``tol`` -- the paper stresses that over-optimising the bound hurts. The result is an artefact of
``samplers.ode.learnt_grid`` ({"t": the model times, "base": the solver, "klub_init", "klub"}), saved with
its ``save_grid``/``load_grid`` and run by its ``learnt_grid_sampler`` (the last point is replaced by the
clean data, sigma = 0, as the published AYS schedules are used).

``gaussian_sigmas`` is the paper's closed form for Gaussian data N(0, c^2 I) and the Euler solver,
s_i = c tan((1 - i/n) atan(s_min / c) + (i/n) atan(s_max / c)) (increasing in i; returned from noise to
data): uniform steps in atan(s / c). It is not the minimiser of the bound above at finite n (measured in
tests/test_fastode_ays.py: the KLUB's own Gaussian optimum is found by ``optimise_grid``).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from samplers.checks import check_int, check_positive
from samplers.grids import TimeGrid, sigma_grid, sigma_range, time_grid
from samplers.ode.common import check_choice, predictor
from samplers.ode.learnt_grid import BASES
from samplers.schedules import Schedule


def gaussian_sigmas(num_points: int, c: float, sigma_min: float, sigma_max: float) -> np.ndarray:
    """The closed-form AYS schedule for data N(0, c^2 I): ``num_points`` sigmas uniform in atan(sigma / c)
    from ``sigma_max`` down to ``sigma_min``."""
    check_int("num_points", num_points, 2)
    c, lo, hi = (check_positive(n, v) for n, v in (("c", c), ("sigma_min", sigma_min), ("sigma_max", sigma_max)))
    if not hi > lo:
        raise ValueError(f"sigma_max ({hi}) must exceed sigma_min ({lo})")
    u = np.linspace(0.0, 1.0, num_points)
    return (c * np.tan((1.0 - u) * np.arctan(lo / c) + u * np.arctan(hi / c)))[::-1].copy()


def gaussian_grid(schedule: Schedule, num_steps: int, c: float, final: str | None = "zero") -> TimeGrid:
    """``num_steps`` steps of the Gaussian closed form over the schedule's sigma range (``final="zero"``:
    its last point replaced by sigma = 0, so ``num_steps`` model calls)."""
    lo, hi = sigma_range(schedule)
    return sigma_grid(schedule, gaussian_sigmas(check_int("num_steps", num_steps, 1) + 1, c, lo, hi), final)


def _denoiser(schedule: Schedule, model_fn: Callable, predicts: str) -> Callable:
    """D(y, s): the model's x0 prediction at VE point (y, s), called at the schedule's t(s)."""
    x0_of = predictor(schedule, predicts, "x0")(model_fn)

    def denoise(y, s):
        t = schedule.t_from_lambda(-jnp.log(s))
        return x0_of(schedule.alpha(t).astype(y.dtype) * y, t.astype(y.dtype))

    return denoise


def klub_estimator(schedule: Schedule, model_fn: Callable, x0, *, predicts: str = "eps", nodes: int = 8,
                   key=None) -> Callable:
    """``cost(lo, hi) -> (K,)``: the KLUB terms int_lo^hi E||D(y_s, s) - D(y_hi, hi)||^2 / s^3 ds of K
    intervals (arrays lo < hi of shape (K,)), estimated over the data sample ``x0`` (B, d) with one fixed
    draw of noise per quadrature node (module docstring). One jit-compiled function per K."""
    x0 = jnp.asarray(x0)
    if x0.ndim != 2:
        raise ValueError(f"x0 must be a (batch, dim) sample of the data, got shape {x0.shape}")
    nodes = check_int("nodes", nodes, 1)
    gl_u, gl_w = np.polynomial.legendre.leggauss(nodes)
    key = jax.random.PRNGKey(0) if key is None else key
    eps, z = jax.random.normal(key, (2, nodes) + x0.shape, x0.dtype)
    denoise = _denoiser(schedule, model_fn, predicts)

    def one(lo, hi):
        la, lb = jnp.log(lo), jnp.log(hi)
        s = jnp.exp(0.5 * (la + lb) + 0.5 * (lb - la) * jnp.asarray(gl_u, x0.dtype))  # nodes in log s
        w = 0.5 * (lb - la) * jnp.asarray(gl_w, x0.dtype) / s**2  # ds / s^3 = d(log s) / s^2

        def at(sj, ej, zj):
            y = x0 + sj * ej
            y_hi = y + jnp.sqrt(jnp.maximum(hi**2 - sj**2, 0.0)) * zj
            return jnp.mean(jnp.sum((denoise(y, sj) - denoise(y_hi, hi)) ** 2, axis=-1))

        return jnp.sum(w * jax.vmap(at)(s, eps, z))

    return jax.jit(jax.vmap(one))


def klub(cost: Callable, sigmas) -> float:
    """The KLUB of the decreasing ``sigmas`` (all positive) from a ``klub_estimator``."""
    sig = np.asarray(sigmas, np.float64)
    return float(np.sum(np.asarray(cost(jnp.asarray(sig[1:]), jnp.asarray(sig[:-1])), np.float64)))


def optimise_sigmas(cost: Callable, sigmas, *, candidates: int = 16, sweeps: int = 10,
                    tol: float = 1e-3) -> tuple[np.ndarray, list[float]]:
    """Coordinate descent on the KLUB over the inner points of the decreasing ``sigmas`` (end points fixed):
    each point in turn takes the best of ``candidates`` log-spaced values strictly between its neighbours
    (or keeps its value); stops after ``sweeps`` sweeps or once a sweep lowers the bound by less than a
    fraction ``tol`` (early stopping). Returns the sigmas and the bound before each sweep and at the end."""
    check_int("candidates", candidates, 2)
    check_int("sweeps", sweeps, 1)
    check_positive("tol", tol)
    sig = np.asarray(sigmas, np.float64).copy()
    frac = np.linspace(0.0, 1.0, candidates + 2)[1:-1]
    history = [klub(cost, sig)]
    for _ in range(sweeps):
        for j in range(1, len(sig) - 1):
            above, below = sig[j - 1], sig[j + 1]
            cand = np.append(np.exp(np.log(below) + frac * (np.log(above) - np.log(below))), sig[j])
            ones = np.ones_like(cand)
            # the step from above ends at the candidate (denoiser frozen at above); the next starts at it
            total = np.asarray(cost(jnp.asarray(cand), jnp.asarray(above * ones)), np.float64) + \
                np.asarray(cost(jnp.asarray(below * ones), jnp.asarray(cand)), np.float64)
            sig[j] = cand[int(np.argmin(total))]
        history.append(klub(cost, sig))
        if history[-2] - history[-1] < tol * history[-2]:
            break
    return sig, history


def optimise_grid(schedule: Schedule, model_fn: Callable, x0, nfe: int, *, base: str = "ddim",
                  predicts: str = "eps", init_sigmas=None, init_spacing: str | None = None, nodes: int = 8,
                  candidates: int = 16, sweeps: int = 10, tol: float = 1e-3, key=None) -> dict:
    """The AYS grid of ``nfe`` model calls for ``model_fn`` on the data sample ``x0``: ``nfe + 1`` sigmas
    over the schedule's range (start: ``init_sigmas``, or the ``nfe + 1`` points of the named
    ``time_grid`` spacing ``init_spacing``, e.g. "karras"; by default uniform in log sigma) optimised by
    ``optimise_sigmas``; the last replaced by sigma = 0 when sampling. Returns the ``learnt_grid``
    artefact {"t": the nfe model times, "base", "klub_init", "klub", "sweeps"}."""
    check_choice("base", base, sorted(BASES))
    nfe = check_int("nfe", nfe, 1)
    lo, hi = sigma_range(schedule)
    if init_spacing is not None:
        if init_sigmas is not None:
            raise ValueError("init_sigmas and init_spacing are alternatives: give at most one")
        start = time_grid(schedule, nfe, init_spacing)
        init_sigmas = start.sigma / start.alpha
        if not (np.all(np.diff(init_sigmas) < 0) and init_sigmas[-1] > 0):
            raise ValueError(f"init_spacing {init_spacing!r} must give nfe + 1 strictly decreasing positive sigmas "
                             f"on this schedule (a spacing with its own final step to sigma = 0, e.g. diffusers' "
                             f"'linspace' on vp_discrete, does not: use 'uniform'), got {init_sigmas}")
    if init_sigmas is None:
        init_sigmas = np.geomspace(hi, lo, nfe + 1)
    init_sigmas = np.asarray(init_sigmas, np.float64)
    if init_sigmas.shape != (nfe + 1,):
        raise ValueError(f"init_sigmas must hold nfe + 1 = {nfe + 1} sigmas, got shape {init_sigmas.shape}")
    sigma_grid(schedule, init_sigmas)  # validates order and range
    cost = klub_estimator(schedule, model_fn, x0, predicts=predicts, nodes=nodes, key=key)
    sig, history = optimise_sigmas(cost, init_sigmas, candidates=candidates, sweeps=sweeps, tol=tol)
    grid = sigma_grid(schedule, sig, final="zero")
    return {"t": np.asarray(grid.t[:-1]), "base": base, "klub_init": history[0], "klub": history[-1],
            "sweeps": float(len(history) - 1)}

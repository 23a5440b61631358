"""High-accuracy reference solution of the probability-flow ODE (the "exact" answer).

With phi = atan2(sigma, alpha) and y = x / sqrt(alpha^2 + sigma^2), every
schedule's PF-ODE becomes the schedule-free "trigonometric" ODE

    dy/dphi = -sin(phi) x0(y; cos phi, sin phi) + cos(phi) eps(y; cos phi, sin phi),

on the compact interval phi in [0, pi/2], so pure noise (alpha = 0) and clean
data (sigma = 0) are both reachable. It is integrated with diffrax's 8th-order
Dormand-Prince method and a PID step-size controller at tight tolerances; run it
under ``jax.enable_x64(True)`` for float64 accuracy.
"""
from __future__ import annotations

from typing import Callable

import diffrax
import jax.numpy as jnp
import numpy as np

from samplers.param import to_x0_eps
from samplers.schedules import Schedule


def denoiser_from_model(model_fn: Callable, schedule: Schedule, predicts: str) -> Callable:
    """``denoise(y, alpha, sigma) -> (x0, eps)`` of any model_fn, for 0 < phi < pi/2
    (the model is called at t(lambda) with x rescaled to that schedule)."""

    def fn(y, alpha, sigma):
        t = schedule.t_from_lambda(jnp.log(alpha) - jnp.log(sigma))
        a_t = schedule.alpha(t).astype(y.dtype)
        x = (a_t / alpha) * y
        x0, eps = to_x0_eps(model_fn(x, t), x, t, schedule, predicts)
        return x0, eps

    return fn


def _solve(denoise: Callable, x, alpha, sigma, rtol: float, atol: float, max_steps: int):
    """x at every (alpha[k], sigma[k]) along the PF-ODE from x at (alpha[0], sigma[0]), in one solve."""
    alpha, sigma = np.asarray(alpha, np.float64), np.asarray(sigma, np.float64)
    phi = np.arctan2(sigma, alpha)

    def rhs(phi, y, args):
        c, s = jnp.cos(phi), jnp.sin(phi)
        x0, eps = denoise(y, c, s)
        return -s * x0 + c * eps

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs), diffrax.Dopri8(), t0=float(phi[0]), t1=float(phi[-1]),
        dt0=float(phi[-1] - phi[0]) / 100.0, y0=x / np.hypot(alpha[0], sigma[0]),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps,
        saveat=diffrax.SaveAt(ts=phi[1:]),
    )
    return np.hypot(alpha[1:], sigma[1:]).reshape((-1,) + (1,) * np.ndim(x)) * np.asarray(sol.ys)


def solve_pf_ode(denoise: Callable, x, alpha_start: float, sigma_start: float, alpha_end: float, sigma_end: float,
                 rtol: float = 1e-10, atol: float = 1e-10, max_steps: int = 100_000):
    """x at (alpha_end, sigma_end) from x at (alpha_start, sigma_start) along the PF-ODE."""
    return _solve(denoise, x, [alpha_start, alpha_end], [sigma_start, sigma_end], rtol, atol, max_steps)[-1]


def pf_ode_trajectory(denoise: Callable, x, grid, rtol: float = 1e-10, atol: float = 1e-10,
                      max_steps: int = 100_000) -> np.ndarray:
    """The exact PF-ODE states at every point of a ``TimeGrid`` from x at its first: shape (N+1, *x.shape),
    saved along one solve (one compile)."""
    return np.concatenate([np.asarray(x)[None], _solve(denoise, x, grid.alpha, grid.sigma, rtol, atol, max_steps)])


def reference_sample(denoise: Callable, x, grid, **kwargs):
    """The exact PF-ODE solution from the first to the last point of a ``TimeGrid``."""
    return solve_pf_ode(denoise, x, grid.alpha[0], grid.sigma[0], grid.alpha[-1], grid.sigma[-1], **kwargs)

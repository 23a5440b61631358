"""Noise schedules x_t = alpha(t) x_0 + sigma(t) eps, with lambda(t) = log(alpha/sigma).

Each schedule has its own time variable ``t`` (the value passed to ``model_fn``),
sampling runs from ``t_max`` (noise) to ``t_min`` (data), and every method works
on numpy float64 arrays (to build coefficients once) and on JAX arrays (inside a
trace) alike. ``t_from_lambda`` inverts ``lambda`` exactly.

* ``vp_linear``: score_sde VP-SDE, beta(t) = beta_0 + t (beta_1 - beta_0), t in [eps, 1].
* ``vp_cosine``: improved DDPM cosine, alpha_bar(t) = f(t)/f(0), f = cos((t+s)/(1+s) pi/2)^2.
* ``vp_discrete``: a DDPM ``betas`` array; t is the (fractional) training-step
  index in [0, N-1], log alpha interpolated piecewise linearly (DPM-Solver, App. D),
  so at integer t it equals diffusers' ``alphas_cumprod[t]`` exactly.
* ``ve``: sigma(t) = sigma_min (sigma_max/sigma_min)^t, alpha = 1.
* ``edm``: t is sigma itself (Karras et al. 2022), alpha = 1.
* ``flow``: rectified flow / flow matching, alpha = 1 - t, sigma = t.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import jax.numpy as jnp


def xp_of(*arrays):
    """The array namespace for ``arrays``: jax.numpy if any is a JAX array, else numpy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _sigmoid_sqrt(xp, lam):
    """(alpha, sigma) of a VP schedule from lambda: alpha^2 = sigmoid(2 lam)."""
    log_alpha = -0.5 * xp.logaddexp(0.0, -2.0 * lam)
    log_sigma = -0.5 * xp.logaddexp(0.0, 2.0 * lam)
    return log_alpha, log_sigma


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """Base class: subclasses define ``log_alpha``, ``log_sigma`` and ``t_from_lambda``."""

    name: str
    t_min: float
    t_max: float

    def alpha(self, t):
        return xp_of(t).exp(self.log_alpha(t))

    def sigma(self, t):
        return xp_of(t).exp(self.log_sigma(t))

    def lambda_(self, t):
        return self.log_alpha(t) - self.log_sigma(t)

    def log_alpha(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def log_sigma(self, t):  # pragma: no cover - abstract
        raise NotImplementedError

    def t_from_lambda(self, lam):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def is_vp(self) -> bool:
        return False

    def check_t(self, t: np.ndarray, what: str = "timesteps") -> None:
        t = np.asarray(t, np.float64)
        lo, hi = self.t_min, self.t_max
        tol = 1e-9 * max(1.0, abs(hi))
        if np.any(t < lo - tol) or np.any(t > hi + tol):
            raise ValueError(
                f"{what} must lie in [{lo}, {hi}] for the {self.name} schedule; got values in "
                f"[{t.min()}, {t.max()}]"
            )


@dataclasses.dataclass(frozen=True, eq=False)
class VP(Schedule):
    """Variance-preserving: alpha^2 + sigma^2 = 1, so log sigma = log(1 - alpha^2) / 2."""

    @property
    def is_vp(self):
        return True

    def log_sigma(self, t):
        xp = xp_of(t)
        return 0.5 * xp.log(-xp.expm1(2.0 * self.log_alpha(t)))


@dataclasses.dataclass(frozen=True, eq=False)
class VPLinear(VP):
    beta_min: float = 0.1
    beta_max: float = 20.0

    def log_alpha(self, t):
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def t_from_lambda(self, lam):
        xp = xp_of(lam)
        tmp = 2.0 * (self.beta_max - self.beta_min) * xp.logaddexp(0.0, -2.0 * lam)
        delta = self.beta_min**2 + tmp
        return tmp / (xp.sqrt(delta) + self.beta_min) / (self.beta_max - self.beta_min)


@dataclasses.dataclass(frozen=True, eq=False)
class VPCosine(VP):
    s: float = 0.008

    def _log_f(self, t):
        xp = xp_of(t)
        return xp.log(xp.cos((t + self.s) / (1.0 + self.s) * np.pi / 2.0))

    def log_alpha(self, t):
        return self._log_f(t) - self._log_f(0.0 * t)

    def t_from_lambda(self, lam):
        xp = xp_of(lam)
        log_alpha, _ = _sigmoid_sqrt(xp, lam)
        log_f0 = np.log(np.cos(self.s / (1.0 + self.s) * np.pi / 2.0))
        return 2.0 * (1.0 + self.s) / np.pi * xp.arccos(xp.exp(log_alpha + log_f0)) - self.s


@dataclasses.dataclass(frozen=True, eq=False)
class VPDiscrete(VP):
    log_alphas: Any = None  # 0.5 * log(alphas_cumprod), shape (N,)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.log_alphas)

    def log_alpha(self, t):
        xp = xp_of(t)
        grid = xp.arange(len(self.log_alphas), dtype=xp.asarray(t).dtype if xp is jnp else np.float64)
        return xp.interp(t, grid, xp.asarray(self.log_alphas))

    def t_from_lambda(self, lam):
        xp = xp_of(lam)
        log_alpha, _ = _sigmoid_sqrt(xp, lam)
        grid = xp.arange(len(self.log_alphas), dtype=np.float64 if xp is np else None)
        # log_alphas decrease with t: interpolate on the reversed (increasing) table.
        return xp.interp(log_alpha, xp.asarray(self.log_alphas)[::-1], grid[::-1])


@dataclasses.dataclass(frozen=True, eq=False)
class VE(Schedule):
    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def log_alpha(self, t):
        return 0.0 * t

    def log_sigma(self, t):
        return np.log(self.sigma_min) + t * (np.log(self.sigma_max) - np.log(self.sigma_min))

    def t_from_lambda(self, lam):
        return (-lam - np.log(self.sigma_min)) / (np.log(self.sigma_max) - np.log(self.sigma_min))


@dataclasses.dataclass(frozen=True, eq=False)
class EDM(Schedule):
    """t = sigma (Karras et al. 2022); any preconditioning lives in the model_fn."""

    def sigma(self, t):
        return 1.0 * t

    def log_alpha(self, t):
        return 0.0 * t

    def log_sigma(self, t):
        return xp_of(t).log(t)

    def t_from_lambda(self, lam):
        return xp_of(lam).exp(-lam)


@dataclasses.dataclass(frozen=True, eq=False)
class Flow(Schedule):
    """Rectified flow: x_t = (1 - t) x_0 + t eps; t = 1 is noise."""

    def alpha(self, t):
        return 1.0 - t

    def sigma(self, t):
        return 1.0 * t

    def log_alpha(self, t):
        return xp_of(t).log1p(-t)

    def log_sigma(self, t):
        return xp_of(t).log(t)

    def t_from_lambda(self, lam):
        xp = xp_of(lam)
        return 1.0 / (1.0 + xp.exp(lam))


def vp_linear(beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0) -> VPLinear:
    return VPLinear("vp_linear", t_min, t_max, beta_min, beta_max)


def vp_cosine(s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.9946) -> VPCosine:
    return VPCosine("vp_cosine", t_min, t_max, s)


def ddpm_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2,
               beta_schedule: str = "linear") -> np.ndarray:
    """DDPM ``betas`` as diffusers builds them (``linear`` or ``scaled_linear``)."""
    if beta_schedule == "linear":
        return np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float64)
    if beta_schedule == "scaled_linear":
        return np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float64) ** 2
    raise ValueError(f"beta_schedule must be one of ['linear', 'scaled_linear'], got {beta_schedule!r}")


def vp_discrete(betas=None, alphas_cumprod=None) -> VPDiscrete:
    """Discrete-time VP schedule from DDPM ``betas`` (default: linear 1e-4..0.02, 1000
    steps) or directly from ``alphas_cumprod``."""
    if alphas_cumprod is not None:
        if betas is not None:
            raise ValueError("give betas or alphas_cumprod, not both")
        ac = np.asarray(alphas_cumprod, np.float64)
        if ac.ndim != 1 or len(ac) < 2 or np.any(ac <= 0) or np.any(ac >= 1) or np.any(np.diff(ac) >= 0):
            raise ValueError("alphas_cumprod must be a 1-D strictly decreasing array of values in (0, 1)")
        log_alphas = 0.5 * np.log(ac)
        return VPDiscrete("vp_discrete", 0.0, float(len(ac) - 1), log_alphas)
    betas = ddpm_betas() if betas is None else np.asarray(betas, np.float64)
    if betas.ndim != 1 or len(betas) < 2 or np.any(betas <= 0) or np.any(betas >= 1):
        raise ValueError("betas must be a 1-D array of at least 2 values in (0, 1)")
    log_alphas = 0.5 * np.cumsum(np.log1p(-betas))
    return VPDiscrete("vp_discrete", 0.0, float(len(betas) - 1), log_alphas)


def ve(sigma_min: float = 0.01, sigma_max: float = 50.0) -> VE:
    return VE("ve", 0.0, 1.0, sigma_min, sigma_max)


def edm(sigma_min: float = 0.002, sigma_max: float = 80.0) -> EDM:
    return EDM("edm", sigma_min, sigma_max)


def flow(t_min: float = 0.0, t_max: float = 1.0) -> Flow:
    return Flow("flow", t_min, t_max)


SCHEDULES = {
    "vp_linear": vp_linear,
    "vp_cosine": vp_cosine,
    "vp_discrete": vp_discrete,
    "ve": ve,
    "edm": edm,
    "flow": flow,
}


def get_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name; an unknown name is a ValueError listing the choices."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {name!r}")
    return SCHEDULES[name](**kwargs)

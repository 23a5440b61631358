"""Masking schedules alpha(t): the probability that a token is still clean at time t.

t = 1 is all noise (alpha = 0, up to ``eps`` for log-linear), t = 0 is data (alpha = 1). Every method
works on numpy float64 (coefficients at build time) and on JAX arrays (inside a trace) alike, and
``t_from_alpha`` inverts ``alpha`` exactly (the first-hitting sampler needs alpha^-1).

* ``linear``:     alpha = 1 - t                              (MD4; first-hitting: t <- t u^(1/n))
* ``cosine``:     alpha = 1 - cos(pi/2 (1 - t))              (MD4 cosine, MaskGIT)
* ``loglinear``:  alpha = 1 - (1 - eps) t                    (MDLM; total noise -log(1 - (1-eps) t))
* ``polynomial``: alpha = 1 - t^w                            (MD4 polynomial, w > 0)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from samplers.schedules import xp_of


@dataclasses.dataclass(frozen=True)
class MaskSchedule:
    """alpha(t) = 1 - c f(t)^w with f one of the shapes below; ``dalpha`` is d alpha / dt."""

    name: str
    power: float = 1.0  # w (polynomial)
    scale: float = 1.0  # c = 1 - eps (log-linear)

    def _f(self, xp, t):
        return xp.sin(0.5 * np.pi * t) if self.name == "cosine" else t

    def alpha(self, t):
        xp = xp_of(t)
        return 1.0 - self.scale * self._f(xp, t) ** self.power

    def dalpha(self, t):
        xp = xp_of(t)
        if self.name == "cosine":
            return -0.5 * np.pi * self.scale * xp.cos(0.5 * np.pi * t)
        return -self.scale * self.power * t ** (self.power - 1.0)

    def t_from_alpha(self, alpha):
        xp = xp_of(alpha)
        f = xp.clip((1.0 - alpha) / self.scale, 0.0, 1.0) ** (1.0 / self.power)
        return xp.arcsin(f) / (0.5 * np.pi) if self.name == "cosine" else f


def linear() -> MaskSchedule:
    return MaskSchedule("linear")


def cosine() -> MaskSchedule:
    return MaskSchedule("cosine")


def loglinear(eps: float = 1e-3) -> MaskSchedule:
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps!r}")
    return MaskSchedule("loglinear", scale=1.0 - eps)


def polynomial(power: float = 2.0) -> MaskSchedule:
    if not power > 0:
        raise ValueError(f"power must be > 0, got {power!r}")
    return MaskSchedule("polynomial", power=float(power))


MASK_SCHEDULES = {"linear": linear, "cosine": cosine, "loglinear": loglinear, "polynomial": polynomial}


def get_mask_schedule(schedule, **kwargs) -> MaskSchedule:
    """A MaskSchedule by name (or one passed through); an unknown name is a ValueError."""
    if isinstance(schedule, MaskSchedule):
        return schedule
    if schedule not in MASK_SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(MASK_SCHEDULES)}, got {schedule!r}")
    return MASK_SCHEDULES[schedule](**kwargs)


def time_grid(num_steps: int, t_max: float = 1.0, t_min: float = 0.0) -> np.ndarray:
    """Uniform times t_0 = t_max > ... > t_N = t_min (num_steps + 1 points, float64)."""
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min!r}, t_max={t_max!r}")
    return np.linspace(t_max, t_min, num_steps + 1)

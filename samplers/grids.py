"""Time grids: the N+1 points t_0 > t_1 > ... > t_N a sampler steps through.

A ``TimeGrid`` holds, per point, the model time ``t`` and the schedule's
``alpha``, ``sigma`` and ``lam`` = log(alpha/sigma) in float64 numpy. Its last
point may be the clean data itself (``final="zero"``: alpha=1, sigma=0,
lam=+inf), which samplers reach but never evaluate the model at.

Spacings:

* ``uniform``   -- uniform in t.
* ``logsnr``    -- uniform in lambda (DPM-Solver's ``logSNR``).
* ``quadratic`` -- uniform in sqrt(t) (DPM-Solver's ``time_quadratic``).
* ``karras``    -- Karras et al. (2022) rho-spacing in sigma/alpha.
* ``linspace``, ``leading``, ``trailing`` -- diffusers' integer spacings of a
  discrete schedule (Lin et al. 2023, Table 2), as its multistep schedulers
  build them.
* ``ays_sd15``, ``ays_sdxl``, ``ays_svd`` -- Align Your Steps' published 10-step
  sigma tables (Sabour et al. 2024; ``AYS_SIGMAS``), log-linearly interpolated
  to other step counts (``loglinear_interp``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from samplers.schedules import Schedule, VPDiscrete

CONTINUOUS_SPACINGS = ("uniform", "logsnr", "quadratic", "karras")
DISCRETE_SPACINGS = ("linspace", "leading", "trailing")
# Align Your Steps (Sabour et al. 2024, "Align Your Steps: Optimizing Sampling Schedules in Diffusion Models"):
# the published optimised 10-step schedules, as sigma = sigma_t / alpha_t (VE/EDM variables), noise to data.
AYS_SIGMAS = {
    "ays_sd15": (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029),
    "ays_sdxl": (14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029),
    "ays_svd": (700.0, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}
AYS_SPACINGS = tuple(AYS_SIGMAS)
SPACINGS = CONTINUOUS_SPACINGS + DISCRETE_SPACINGS + AYS_SPACINGS
FINALS = (None, "zero", "last")


@dataclasses.dataclass(frozen=True, eq=False)
class TimeGrid:
    t: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray
    lam: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.t) - 1

    @property
    def final_zero(self) -> bool:
        return bool(self.sigma[-1] == 0.0)

    def __post_init__(self):
        if len(self.t) < 2:
            raise ValueError("a time grid needs at least 2 points (num_steps >= 1)")


def _from_t(schedule: Schedule, t: np.ndarray, zero: bool = False) -> TimeGrid:
    """The grid of model times ``t``, then (``zero``) a last point at the clean data (alpha=1, sigma=0)."""
    t = np.asarray(t, np.float64)
    with np.errstate(divide="ignore"):  # lambda = +inf where sigma = 0 (e.g. flow at t = 0)
        arrays = [t, schedule.alpha(t), schedule.sigma(t), schedule.lambda_(t)]
    if zero:
        arrays = [np.concatenate([a, [v]]) for a, v in zip(arrays, (t[-1], 1.0, 0.0, np.inf))]
    return TimeGrid(*arrays)


def _discrete_timesteps(schedule: VPDiscrete, n: int, spacing: str, steps_offset: int) -> np.ndarray:
    total = schedule.num_train_timesteps
    if spacing == "linspace":
        return np.linspace(0, total - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    if spacing == "leading":
        ratio = total // (n + 1)
        return (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + steps_offset
    ratio = total / n
    return np.arange(total, 0, -ratio).round().astype(np.int64) - 1


def loglinear_interp(sigmas, num_points: int) -> np.ndarray:
    """``num_points`` sigmas from the decreasing table ``sigmas``: log sigma linearly interpolated over
    linspace(0, 1) (the AYS authors' rule for other step counts; the table itself at len(sigmas))."""
    ys = np.log(np.asarray(sigmas, np.float64)[::-1])
    out = np.interp(np.linspace(0.0, 1.0, num_points), np.linspace(0.0, 1.0, len(ys)), ys)
    return np.exp(out)[::-1].copy()


def sigma_range(schedule: Schedule) -> tuple[float, float]:
    """(sigma_min, sigma_max) of ``schedule`` in VE variables: sigma / alpha at t_min and t_max."""
    with np.errstate(divide="ignore"):
        lo, hi = np.exp(-schedule.lambda_(np.array([schedule.t_min, schedule.t_max], np.float64)))
    return float(lo), float(hi)


def sigma_grid(schedule: Schedule, sigmas, final: str | None = None) -> TimeGrid:
    """The grid at the schedule's times of the decreasing VE sigmas (sigma_t / alpha_t); ``final="zero"``
    replaces the last point by the clean data (sigma = 0), as AYS samplers end (ComfyUI, diffusers)."""
    sig = np.asarray(sigmas, np.float64)
    if sig.ndim != 1 or len(sig) < 2 or not np.all(sig > 0) or not np.all(np.diff(sig) < 0):
        raise ValueError(f"sigmas must be a 1-D strictly decreasing array of >= 2 positive values, got {sig!r}")
    lo, hi = sigma_range(schedule)
    # 1% slack: the published tables are rounded to 3 decimals (SD's 14.615 vs 14.6146); clipped below
    if sig[0] > hi * (1 + 1e-2) or sig[-1 if final != "zero" else -2] < lo * (1 - 1e-2):
        raise ValueError(f"spacing: sigmas {sig[0]:g}..{sig[-1]:g} leave the {schedule.name} schedule's range "
                         f"sigma/alpha in [{lo:g}, {hi:g}]")
    keep = sig[:-1] if final == "zero" else sig
    t = np.clip(np.asarray(schedule.t_from_lambda(-np.log(keep)), np.float64), schedule.t_min, schedule.t_max)
    return _from_t(schedule, t, final == "zero")


def validate_timesteps(schedule: Schedule, timesteps) -> np.ndarray:
    t = np.asarray(timesteps, np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(f"timesteps must be a 1-D array of at least 2 times; got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("timesteps must be finite")
    if not np.all(np.diff(t) < 0):
        raise ValueError("timesteps must be strictly decreasing (from noise to data)")
    schedule.check_t(t)
    return t


def time_grid(
    schedule: Schedule,
    num_steps: int | None = None,
    spacing: str = "logsnr",
    *,
    t_start: float | None = None,
    t_end: float | None = None,
    final: str | None = None,
    timesteps=None,
    rho: float = 7.0,
    steps_offset: int = 0,
) -> TimeGrid:
    """Build the grid of ``num_steps`` steps (``num_steps + 1`` points).

    ``final=None`` ends at ``t_end``; ``"zero"`` adds a last step from ``t_end``
    to sigma=0 (so ``num_steps - 1`` steps are spaced, as diffusers'
    ``final_sigmas_type="zero"``); ``"last"`` ends at the schedule's ``t_min``.
    Discrete spacings take ``num_steps`` integer timesteps and then the final
    point (``"zero"`` by default). ``timesteps`` gives the points explicitly
    (validated: strictly decreasing, inside the schedule's range).
    """
    if final not in FINALS:
        raise ValueError(f"final must be one of {list(FINALS)}, got {final!r}")
    if timesteps is not None:
        return _from_t(schedule, validate_timesteps(schedule, timesteps), final == "zero")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {list(SPACINGS)}, got {spacing!r}")
    if num_steps is None or int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    num_steps = int(num_steps)

    if spacing in AYS_SPACINGS:
        if t_start is not None or t_end is not None:
            raise ValueError(f"spacing {spacing!r} is a fixed sigma table: give no t_start/t_end")
        if final == "last":
            raise ValueError(f"spacing {spacing!r} takes final None or 'zero', got {final!r}")
        return sigma_grid(schedule, loglinear_interp(AYS_SIGMAS[spacing], num_steps + 1), final)
    if spacing in DISCRETE_SPACINGS:
        if not isinstance(schedule, VPDiscrete):
            raise ValueError(f"spacing {spacing!r} needs the vp_discrete schedule, got {schedule.name!r}")
        final = "zero" if final is None else final
        ts = _discrete_timesteps(schedule, num_steps, spacing, steps_offset).astype(np.float64)
        if final == "zero":
            return _from_t(schedule, ts, zero=True)
        return _from_t(schedule, np.concatenate([ts, [schedule.t_min]]))

    t0 = schedule.t_max if t_start is None else float(t_start)
    t1 = schedule.t_min if t_end is None else float(t_end)
    schedule.check_t(np.array([t0, t1]), "t_start/t_end")
    if not t0 > t1:
        raise ValueError(f"t_start ({t0}) must be greater than t_end ({t1})")
    n = num_steps - 1 if final == "zero" else num_steps
    if n == 0:
        return _from_t(schedule, np.array([t0]), zero=True)
    if spacing in ("logsnr", "karras") and not np.all(np.isfinite(schedule.lambda_(np.array([t0, t1])))):
        raise ValueError(f"spacing={spacing!r} spaces the log-SNR, which is infinite at t_start={t0:g} or "
                         f"t_end={t1:g} of the {schedule.name} schedule; give t_start/t_end inside it or "
                         f"spacing 'uniform' / 'quadratic'")
    if spacing == "uniform":
        t = np.linspace(t0, t1, n + 1)
    elif spacing == "logsnr":
        lam = np.linspace(schedule.lambda_(t0), schedule.lambda_(t1), n + 1)
        t = schedule.t_from_lambda(lam)
    elif spacing == "quadratic":
        t = np.linspace(np.sqrt(t0), np.sqrt(t1), n + 1) ** 2
    else:  # karras
        s0, s1 = np.exp(-schedule.lambda_(t0)), np.exp(-schedule.lambda_(t1))
        ramp = np.linspace(0.0, 1.0, n + 1)
        s = (s0 ** (1 / rho) + ramp * (s1 ** (1 / rho) - s0 ** (1 / rho))) ** rho
        t = schedule.t_from_lambda(-np.log(s))
    t[0], t[-1] = t0, t1  # exact end points despite round trips through lambda
    return _from_t(schedule, t, final == "zero")

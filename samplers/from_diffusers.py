"""Samplers from diffusers scheduler configs: ``from_diffusers(config, num_inference_steps)``.

A model repository's ``scheduler_config.json`` (or its dict) names a diffusers scheduler class
and its options; ``from_diffusers`` returns the ``Sampler`` that takes the same steps on the same
discrete schedule, and that schedule (``vp_discrete`` on diffusers' own ``alphas_cumprod``)::

    sampler, schedule = from_diffusers("scheduler_config.json", num_inference_steps=25)
    out = sample(sampler, model_fn, x_T, key)   # model_fn(x, t): the network, t on schedule's time

The mapping (diffusers 0.42; the same numbers as its own loop on the exact Gaussian mixture,
tests/test_from_diffusers.py):

* ``DDIMScheduler`` -> ``ode.ddim`` on its timesteps (``leading``/``trailing``/``linspace``; it steps
  from t to t - T // N, so a spacing whose steps are not that is refused), last step to
  alpha = 1 (``set_alpha_to_one``) or to alphas_cumprod[0].
* ``DDPMScheduler`` -> ``sde.ancestral.ddpm`` (``fixed_small``/``fixed_small_log`` -> "small",
  ``fixed_large`` -> "large"); ``clip_sample`` (range 1) is thresholding with max_value 1.
* ``EulerDiscreteScheduler`` -> ``ode.rk.euler``, ``HeunDiscreteScheduler`` -> ``ode.rk.heun``,
  ``EulerAncestralDiscreteScheduler`` -> ``sde.ancestral.ddim_eta`` with eta = 1 (its
  sigma_up/sigma_down step is DDIM's eta = 1 step written in sigma), each on the scheduler's
  sigmas (linearly interpolated in t, or Karras et al.'s rho = 7 ramp), last step to sigma = 0.
* ``DPMSolverMultistepScheduler`` -> ``ode.dpm_solver.dpm_solver_pp`` / ``dpm_solver``
  (multistep) or ``sde.sde_dpm.sde_dpm_solver`` (``sde-dpmsolver(++)``);
  ``DPMSolverSinglestepScheduler`` -> singlestep DPM-Solver(++) with diffusers' order list
  (``stages="grid"``); ``UniPCMultistepScheduler`` -> ``ode.unipc.unipc``;
  ``DEISMultistepScheduler`` -> ``ode.deis.deis``; timesteps from ``grids.time_grid``'s discrete
  spacings. diffusers' "midpoint" / "heun" solver types are our "dpmsolver" / "taylor".

Model time: the sampler calls ``model_fn`` at the schedule time of each grid point. Where
diffusers' sigmas fall between training steps (Euler/Heun's interpolated and Karras sigmas,
DPM-Solver's Karras sigmas) that time is fractional (log-alpha interpolation, ``vp_discrete``),
whereas diffusers hands the network its own interpolated (Euler/Heun) or rounded (DPM-Solver)
timestep; the sampler's noise levels are diffusers' sigmas either way.

The schedule is diffusers' float32 table: betas as torch builds them (``torch.linspace`` in float32
with its fused multiply-add, or the float64 cosine betas rounded to float32), ``alphas_cumprod``
their float64 cumulative product rounded to float32. Every field diffusers reads is checked: a
value this mapping does not reproduce is a ValueError naming the field and the values it takes;
a field the class does not have is one too (diffusers warns and drops it), except the
``tensor_format``/``timestep_values`` of diffusers' first releases, which it never read.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from samplers.core import Sampler
from samplers.grids import TimeGrid, time_grid
from samplers.ode.ddim import ddim
from samplers.ode.deis import deis
from samplers.ode.dpm_solver import dpm_solver, dpm_solver_pp
from samplers.ode.rk import euler, heun
from samplers.ode.unipc import unipc
from samplers.schedules import VPDiscrete, vp_discrete
from samplers.sde.ancestral import ddim_eta, ddpm
from samplers.sde.sde_dpm import sde_dpm_solver

CONFIG_NAME = "scheduler_config.json"
LEGACY_FIELDS = ("tensor_format", "timestep_values")  # diffusers 0.1-0.2 configs; never read by a scheduler
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
# diffusers' name -> ours (ode.dpm_solver's docstring); sde.sde_dpm takes diffusers' names
SOLVER_TYPES = {"midpoint": "dpmsolver", "heun": "taylor"}

# Fields every scheduler below has, with diffusers' defaults.
_BETAS = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
          "trained_betas": None, "prediction_type": "epsilon"}
_THRESHOLD = {"thresholding": False, "dynamic_thresholding_ratio": 0.995, "sample_max_value": 1.0}
_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_FLOW = {"use_flow_sigmas": False, "flow_shift": 1.0, "use_dynamic_shifting": False,
         "time_shift_type": "exponential"}
_SPACING = {"timestep_spacing": "linspace", "steps_offset": 0}

# Per class: every __init__ field of diffusers 0.42 with its default (tests check them against diffusers).
FIELDS: dict[str, dict] = {
    "DDIMScheduler": {**_BETAS, "clip_sample": True, "set_alpha_to_one": True, "steps_offset": 0,
                      "thresholding": False, "dynamic_thresholding_ratio": 0.995, "clip_sample_range": 1.0,
                      "sample_max_value": 1.0, "timestep_spacing": "leading", "rescale_betas_zero_snr": False},
    "DDPMScheduler": {**_BETAS, "variance_type": "fixed_small", "clip_sample": True, **_THRESHOLD,
                      "clip_sample_range": 1.0, "timestep_spacing": "leading", "steps_offset": 0,
                      "rescale_betas_zero_snr": False},
    "EulerDiscreteScheduler": {**_BETAS, "interpolation_type": "linear", **_SIGMAS, "sigma_min": None,
                               "sigma_max": None, **_SPACING, "timestep_type": "discrete",
                               "rescale_betas_zero_snr": False, "final_sigmas_type": "zero"},
    "EulerAncestralDiscreteScheduler": {**_BETAS, **_SPACING, "rescale_betas_zero_snr": False},
    "HeunDiscreteScheduler": {**_BETAS, "beta_start": 0.00085, "beta_end": 0.012, **_SIGMAS, "clip_sample": False,
                              "clip_sample_range": 1.0, **_SPACING},
    "DPMSolverMultistepScheduler": {**_BETAS, "solver_order": 2, **_THRESHOLD, "algorithm_type": "dpmsolver++",
                                    "solver_type": "midpoint", "lower_order_final": True, "euler_at_final": False,
                                    **_SIGMAS, "use_lu_lambdas": False, **_FLOW, "final_sigmas_type": "zero",
                                    "lambda_min_clipped": -math.inf, "variance_type": None, **_SPACING,
                                    "rescale_betas_zero_snr": False},
    "DPMSolverSinglestepScheduler": {**_BETAS, "solver_order": 2, **_THRESHOLD, "algorithm_type": "dpmsolver++",
                                     "solver_type": "midpoint", "lower_order_final": False, **_SIGMAS, **_FLOW,
                                     "final_sigmas_type": "zero", "lambda_min_clipped": -math.inf,
                                     "variance_type": None},
    "UniPCMultistepScheduler": {**_BETAS, "solver_order": 2, **_THRESHOLD, "predict_x0": True, "solver_type": "bh2",
                                "lower_order_final": True, "disable_corrector": [], "solver_p": None, **_SIGMAS,
                                **_FLOW, **_SPACING, "final_sigmas_type": "zero", "rescale_betas_zero_snr": False,
                                "sigma_min": None, "sigma_max": None, "shift_terminal": None},
    "DEISMultistepScheduler": {**_BETAS, "solver_order": 2, **_THRESHOLD, "algorithm_type": "deis",
                               "solver_type": "logrho", "lower_order_final": True, **_SIGMAS, **_FLOW, **_SPACING},
}


class _Config:
    """A scheduler config with diffusers' defaults filled in; ``take`` checks a field's value."""

    def __init__(self, raw: dict):
        name = raw.get("_class_name")
        if name not in FIELDS:
            raise ValueError(f"_class_name must be one of {sorted(FIELDS)}, got {name!r}")
        unknown = sorted(k for k in raw if not k.startswith("_") and k not in FIELDS[name] and k not in LEGACY_FIELDS)
        if unknown:
            raise ValueError(f"{name} has no field {unknown[0]!r} (its fields: {sorted(FIELDS[name])})")
        self.name = name
        self.values = {**FIELDS[name], **{k: v for k, v in raw.items() if k in FIELDS[name]}}

    def __getitem__(self, field: str):
        return self.values[field]

    def take(self, field: str, allowed):
        """The value of ``field``, which must be one of ``allowed`` (else a ValueError naming it)."""
        value = self.values[field]
        if not any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in allowed):
            raise ValueError(f"{self.name}.{field} must be one of {list(allowed)} here, got {value!r}")
        return value

    def check_defaults(self, *fields: str):
        """Fields this mapping supports at diffusers' default value only."""
        for field in fields:
            default, value = FIELDS[self.name][field], self.values[field]
            if value != default:
                raise ValueError(f"{self.name}.{field} is supported at its default {default!r} only, got {value!r}")

    def check_unsupported(self):
        """Fields no scheduler here supports beyond their defaults."""
        unsupported = ("rescale_betas_zero_snr", "use_exponential_sigmas", "use_beta_sigmas", "use_flow_sigmas",
                       "use_dynamic_shifting", "use_lu_lambdas", "lambda_min_clipped", "variance_type", "solver_p",
                       "sigma_min", "sigma_max", "shift_terminal", "interpolation_type", "timestep_type")
        self.check_defaults(*(f for f in unsupported if f in self.values and
                              not (f == "variance_type" and self.name == "DDPMScheduler")))


def load_config(config) -> dict:
    """A config dict, or the dict read from a ``scheduler_config.json`` path (or its directory)."""
    if isinstance(config, dict):
        return dict(config)
    if not isinstance(config, (str, os.PathLike)):
        raise ValueError(f"config must be a dict or a path to {CONFIG_NAME}, got {type(config).__name__}")
    path = os.path.join(config, CONFIG_NAME) if os.path.isdir(config) else os.fspath(config)
    if not os.path.isfile(path):
        raise ValueError(f"config: no scheduler config file at {path!r}")
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"config: {path!r} holds a JSON {type(raw).__name__}, not an object")
    return raw


def _torch_linspace_f32(start: float, end: float, n: int) -> np.ndarray:
    """``torch.linspace(start, end, n, dtype=float32)``: from the start below n // 2, from the end above,
    each value one fused multiply-add (a single rounding to float32)."""
    f32 = np.float32
    step = np.float64((f32(end) - f32(start)) / f32(max(n - 1, 1)))
    i = np.arange(n, dtype=np.float64)
    return np.where(i < n // 2, np.float64(f32(start)) + step * i,
                    np.float64(f32(end)) - step * (n - 1 - i)).astype(f32)


def _cosine_betas(n: int) -> np.ndarray:
    """diffusers' ``betas_for_alpha_bar`` (Nichol & Dhariwal 2021, eq. 17, betas capped at 0.999)."""
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], np.float32)


def alphas_cumprod(cfg: _Config) -> np.ndarray:
    """diffusers' float32 ``alphas_cumprod`` of the config's betas (as float64 numbers)."""
    n = cfg["num_train_timesteps"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"{cfg.name}.num_train_timesteps must be an integer >= 2, got {n!r}")
    if cfg["trained_betas"] is not None:
        betas = np.asarray(cfg["trained_betas"], np.float32)
        if betas.shape != (n,):
            raise ValueError(f"{cfg.name}.trained_betas must hold num_train_timesteps={n} values, got {betas.shape}")
    else:
        kind = cfg.take("beta_schedule", ("linear", "scaled_linear", "squaredcos_cap_v2"))
        b0, b1 = float(cfg["beta_start"]), float(cfg["beta_end"])
        if kind == "linear":
            betas = _torch_linspace_f32(b0, b1, n)
        elif kind == "scaled_linear":
            betas = _torch_linspace_f32(b0**0.5, b1**0.5, n) ** 2
        else:
            betas = _cosine_betas(n)
    if betas.ndim != 1 or not np.all((betas > 0) & (betas < 1)):
        field = "trained_betas" if cfg["trained_betas"] is not None else "beta_start/beta_end"
        raise ValueError(f"{cfg.name}.{field} must give betas in (0, 1)")
    alphas = np.float32(1.0) - betas
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32).astype(np.float64)


def _check_steps(n, total: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= total:
        raise ValueError(f"num_inference_steps must be an integer in [1, num_train_timesteps={total}], got {n!r}")
    return int(n)


def _ddpm_timesteps(cfg: _Config, n: int, total: int, rounded: bool = True) -> np.ndarray:
    """DDIM/DDPM's (``rounded``) or Euler/Heun's (float32 ``linspace``) ``set_timesteps``."""
    spacing = cfg.take("timestep_spacing", ("linspace", "leading", "trailing"))
    if spacing == "linspace":
        if rounded:
            return np.linspace(0, total - 1, n).round()[::-1].copy()
        return np.linspace(0, total - 1, n, dtype=np.float32)[::-1].astype(np.float64)
    if spacing == "leading":
        return (np.arange(0, n) * (total // n)).round()[::-1].astype(np.float64) + _offset(cfg)
    return np.round(np.arange(total, 0, -total / n)) - 1.0


def _offset(cfg: _Config) -> int:
    off = cfg["steps_offset"]
    if isinstance(off, bool) or not isinstance(off, int) or off < 0:
        raise ValueError(f"{cfg.name}.steps_offset must be an integer >= 0, got {off!r}")
    return off


def _predicts(cfg: _Config) -> str:
    return PREDICTION_TYPES[cfg.take("prediction_type", tuple(PREDICTION_TYPES))]


def _thresholding(cfg: _Config, supported: bool) -> dict | None:
    """diffusers' dynamic thresholding of x0 (Imagen) as ``samplers.param.dynamic_threshold`` options."""
    if not cfg.take("thresholding", (False, True)):
        return None
    if not supported:
        raise ValueError(f"{cfg.name}.thresholding=True is supported for data-prediction solvers only "
                         f"(here diffusers re-derives the noise from the thresholded x0)")
    return {"ratio": float(cfg["dynamic_thresholding_ratio"]), "max_value": float(cfg["sample_max_value"])}


def _grid(schedule: VPDiscrete, ts: np.ndarray, final: str | None = None) -> TimeGrid:
    """The grid at explicit times ``ts`` (one time and ``final="zero"``: one step onto the data)."""
    if len(ts) == 1 and final == "zero":
        return time_grid(schedule, 1, "uniform", t_start=float(ts[0]), final="zero")
    return time_grid(schedule, timesteps=ts, final=final)


def _ddim(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    cfg.take("clip_sample", (False,))  # DDIM steps with the unclipped noise: not x0 thresholding
    _thresholding(cfg, supported=False)
    total = schedule.num_train_timesteps
    ts = _ddpm_timesteps(cfg, n, total)
    ratio = total // n  # DDIMScheduler steps from t to t - ratio, whatever the spacing
    if n > 1 and not np.all(np.diff(ts) == -ratio):
        raise ValueError(f"{cfg.name}.timestep_spacing={cfg['timestep_spacing']!r} with {n} steps: DDIM steps from "
                         f"t to t - {ratio}, which is not the next timestep; use 'leading' (or 'trailing' with "
                         f"num_train_timesteps divisible by num_inference_steps)")
    if ts[-1] - ratio >= 0:
        ts = np.append(ts, ts[-1] - ratio)
        grid = time_grid(schedule, timesteps=ts)
    elif cfg.take("set_alpha_to_one", (True, False)):
        grid = _grid(schedule, ts, "zero")
    elif ts[-1] > 0:  # last step to alphas_cumprod[0]
        grid = time_grid(schedule, timesteps=np.append(ts, 0.0))
    else:  # its last step, from alphas_cumprod[0] to itself, does nothing (diffusers spends a call on it)
        grid = time_grid(schedule, timesteps=ts)
    return ddim(schedule, grid, _predicts(cfg))


def _ddpm(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    variance = {"fixed_small": "small", "fixed_small_log": "small", "fixed_large": "large"}[
        cfg.take("variance_type", ("fixed_small", "fixed_small_log", "fixed_large"))]
    ts = _ddpm_timesteps(cfg, n, schedule.num_train_timesteps)
    if variance == "large" and ts[-1] > 0:
        raise ValueError(f"{cfg.name}.variance_type='fixed_large' with a last timestep {int(ts[-1])} > 0: diffusers "
                         f"adds noise of variance beta on the step onto the data; use 'fixed_small' or a spacing "
                         f"ending at t = 0")
    thresholding = _thresholding(cfg, supported=True)
    if thresholding is None and cfg.take("clip_sample", (False, True)):
        cfg.take("clip_sample_range", (1.0, 1))
        thresholding = {"max_value": 1.0}  # dynamic_threshold at max_value 1: clip x0 to [-1, 1]
    return ddpm(schedule, _grid(schedule, ts, "zero"), _predicts(cfg), variance=variance,
                thresholding=thresholding)


def _sigma_grid(cfg: _Config, schedule: VPDiscrete, n: int) -> TimeGrid:
    """Euler/Heun/Euler-ancestral sigmas: interpolated linearly in t at the timesteps (or Karras' ramp
    between the first and last of them), then sigma = 0."""
    ts = _ddpm_timesteps(cfg, n, schedule.num_train_timesteps, rounded=False)
    if "use_karras_sigmas" in cfg.values and cfg.take("use_karras_sigmas", (False, True)):
        return time_grid(schedule, n, "karras", t_start=ts[0], t_end=ts[-1], final="zero")
    ac = np.exp(2.0 * schedule.log_alphas)
    sigmas = np.interp(ts, np.arange(len(ac)), np.sqrt((1.0 - ac) / ac))
    t = np.clip(schedule.t_from_lambda(-np.log(sigmas)), schedule.t_min, schedule.t_max)
    t[ts == np.round(ts)] = ts[ts == np.round(ts)]  # at training steps, exactly
    return _grid(schedule, t, "zero")


def _euler(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    cfg.take("final_sigmas_type", ("zero",))
    return euler(schedule, _sigma_grid(cfg, schedule, n), _predicts(cfg))


def _euler_ancestral(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    return ddim_eta(schedule, _sigma_grid(cfg, schedule, n), _predicts(cfg), eta=1.0)


def _heun(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    cfg.take("clip_sample", (False,))
    return heun(schedule, _sigma_grid(cfg, schedule, n), _predicts(cfg))


def _final(cfg: _Config) -> str:
    return {"zero": "zero", "sigma_min": "last"}[cfg.take("final_sigmas_type", ("zero", "sigma_min"))]


def _solver_grid(cfg: _Config, schedule: VPDiscrete, n: int, spacing: str = "linspace") -> TimeGrid:
    """DPM-Solver/UniPC/DEIS timesteps (``grids.time_grid``'s discrete spacings) or Karras sigmas over the
    whole table; then sigma = 0 (``final_sigmas_type="zero"``) or alphas_cumprod[0] ("sigma_min")."""
    final = _final(cfg) if "final_sigmas_type" in cfg.values else "last"
    if cfg.take("use_karras_sigmas", (False, True)):
        if final != "zero":
            raise ValueError(f"{cfg.name}.use_karras_sigmas=True is supported with final_sigmas_type='zero' only "
                             f"(with 'sigma_min' diffusers' last step goes from sigma_min to itself)")
        return time_grid(schedule, n, "karras", final="zero")
    return time_grid(schedule, n, spacing, final=final, steps_offset=_offset(cfg) if spacing == "leading" else 0)


def _order(cfg: _Config, allowed=(1, 2, 3)) -> int:
    return cfg.take("solver_order", allowed)


def _dpm_multistep(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    algorithm = cfg.take("algorithm_type", ("dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"))
    spacing = cfg.take("timestep_spacing", ("linspace", "leading", "trailing"))
    grid = _solver_grid(cfg, schedule, n, spacing)
    solver_type = cfg.take("solver_type", tuple(SOLVER_TYPES))
    lower = cfg.take("lower_order_final", (True, False))
    if cfg.take("euler_at_final", (False, True)) and not grid.final_zero:
        raise ValueError(f"{cfg.name}.euler_at_final=True is supported with final_sigmas_type='zero' only (where "
                         f"the last step is first order anyway)")
    data = algorithm.endswith("++")
    thresholding = _thresholding(cfg, supported=data)
    if algorithm.startswith("sde-"):
        order = _order(cfg, (1, 2))
        if not data and grid.final_zero:
            raise ValueError(f"{cfg.name}.final_sigmas_type must be 'sigma_min' for algorithm_type='sde-dpmsolver' "
                             f"(diffusers' noise-prediction SDE step to sigma = 0 is undefined)")
        return sde_dpm_solver(schedule, grid, _predicts(cfg), order=order, algorithm=algorithm[4:],
                              solver_type=solver_type, lower_order_final=lower, thresholding=thresholding)
    solver_type = SOLVER_TYPES[solver_type]
    order, predicts = _order(cfg), _predicts(cfg)
    if data:
        return dpm_solver_pp(schedule, grid, order, predicts, method="multistep", lower_order_final=lower,
                             thresholding=thresholding, solver_type=solver_type)
    return dpm_solver(schedule, grid, order, predicts, method="multistep", lower_order_final=lower,
                      solver_type=solver_type)


def singlestep_order_list(order: int, steps: int, lower_order_final: bool, final_zero: bool) -> list[int]:
    """DPMSolverSinglestepScheduler's per-timestep orders ([1, 2, 3, 1, 2, 3, ...]), after the
    lower_order_final that its set_timesteps forces on uneven step counts and on a last step to 0."""
    if not lower_order_final and (steps % order != 0 or final_zero):
        lower_order_final = True
    full, rest = divmod(steps, order)
    if lower_order_final and order > 1:
        if rest == 0:
            orders = list(range(1, order + 1)) * (full - 1) + ([1, 2, 1] if order == 3 else [1, 1])
        else:
            orders = list(range(1, order + 1)) * full + list(range(1, rest + 1))
    else:
        orders = list(range(1, order + 1)) * full
    if final_zero:
        orders[-1] = 1
    return orders


def singlestep_groups(order_list) -> list[int]:
    """Per-timestep orders (a run 1..p is one interval of order p whose stages sit on p consecutive
    timesteps) -> per-interval orders, ``dpm_solver(..., stages="grid", orders=...)``."""
    groups = []
    for p in order_list:
        if p == 1:
            groups.append(1)
        else:
            groups[-1] = p
    return groups


def _dpm_singlestep(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    algorithm = cfg.take("algorithm_type", ("dpmsolver++", "dpmsolver"))
    grid = _solver_grid(cfg, schedule, n)
    order = _order(cfg)
    orders = singlestep_groups(singlestep_order_list(order, n, cfg.take("lower_order_final", (True, False)),
                                                     grid.final_zero))
    solver_type = SOLVER_TYPES[cfg.take("solver_type", tuple(SOLVER_TYPES))]
    thresholding = _thresholding(cfg, supported=algorithm == "dpmsolver++")
    if algorithm == "dpmsolver++":
        return dpm_solver_pp(schedule, grid, order, _predicts(cfg), method="singlestep", thresholding=thresholding,
                             solver_type=solver_type, orders=orders, stages="grid")
    return dpm_solver(schedule, grid, order, _predicts(cfg), method="singlestep", orders=orders, stages="grid",
                      solver_type=solver_type)


def _unipc(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    cfg.check_defaults("use_karras_sigmas")
    grid = _solver_grid(cfg, schedule, n, cfg.take("timestep_spacing", ("linspace", "leading", "trailing")))
    variant = cfg.take("solver_type", ("bh2", "bh1"))
    if variant == "bh1" and grid.final_zero:
        raise ValueError(f"{cfg.name}: solver_type='bh1' needs final_sigmas_type='sigma_min' (diffusers' bh1 step "
                         f"onto sigma = 0 is nan)")
    predict_x0 = cfg.take("predict_x0", (True, False))
    disable = cfg["disable_corrector"]
    if not isinstance(disable, (list, tuple)) or not all(isinstance(i, int) for i in disable):
        raise ValueError(f"{cfg.name}.disable_corrector must be a list of step indices, got {disable!r}")
    return unipc(schedule, grid, _predicts(cfg), order=_order(cfg), variant=variant, predict_x0=predict_x0,
                 lower_order_final=cfg.take("lower_order_final", (True, False)),
                 disable_corrector=[i for i in disable if i < n],
                 thresholding=_thresholding(cfg, supported=predict_x0))


def _deis(cfg: _Config, schedule: VPDiscrete, n: int) -> Sampler:
    cfg.take("algorithm_type", ("deis",))
    cfg.take("solver_type", ("logrho",))
    cfg.check_defaults("use_karras_sigmas")
    _thresholding(cfg, supported=False)
    grid = _solver_grid(cfg, schedule, n, cfg.take("timestep_spacing", ("linspace", "leading", "trailing")))
    return deis(schedule, grid, _predicts(cfg), order=_order(cfg),
                lower_order_final=cfg.take("lower_order_final", (True, False)))


BUILDERS = {"DDIMScheduler": _ddim, "DDPMScheduler": _ddpm, "EulerDiscreteScheduler": _euler,
            "EulerAncestralDiscreteScheduler": _euler_ancestral, "HeunDiscreteScheduler": _heun,
            "DPMSolverMultistepScheduler": _dpm_multistep, "DPMSolverSinglestepScheduler": _dpm_singlestep,
            "UniPCMultistepScheduler": _unipc, "DEISMultistepScheduler": _deis}


def from_diffusers(config, num_inference_steps: int) -> tuple[Sampler, VPDiscrete]:
    """``(sampler, schedule)`` equal to diffusers' scheduler ``config`` (a dict, or a path to a
    ``scheduler_config.json`` or to the directory holding one) run for ``num_inference_steps``
    (``scheduler.set_timesteps(num_inference_steps)``). The model the sampler calls predicts what the
    config's ``prediction_type`` says, at ``schedule``'s time; ``sampler.nfe`` is diffusers' number
    of model calls (Heun: 2 N - 1). Unsupported field values raise a ValueError naming the field."""
    cfg = _Config(load_config(config))
    cfg.check_unsupported()
    schedule = vp_discrete(alphas_cumprod=alphas_cumprod(cfg))
    n = _check_steps(num_inference_steps, schedule.num_train_timesteps)
    return BUILDERS[cfg.name](cfg, schedule, n), schedule

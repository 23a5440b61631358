"""``samplers.from_diffusers``: diffusers scheduler configs by name, against diffusers' own loop.

For every config both sides run the same betas, the same exact Gaussian-mixture model (in the
config's prediction type) and the same initial and step noise (diffusers' ``randn_tensor`` is
handed the z_i our steps draw from their keys). diffusers keeps its sigma tables in float32: the
test recomputes them in float64 by diffusers' own formulas, checks them against the float32 ones,
and hands diffusers the float64 values (as tests/test_parity_*.py do) so that the gap measures the
steps. Tolerances are the parity tests': 1e-6 relative, 1e-5 (float32 level) where diffusers' step
casts the sample to float32 (Euler, Euler-ancestral, DPM-Solver's SDE variants). The control: the
same check rejects a sampler one option away.
"""
import contextlib
import inspect
import json
import warnings

import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import samplers
from models.analytic import random_mixture
from samplers.core import sample
from samplers.from_diffusers import FIELDS, alphas_cumprod, load_config, _Config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

GMM = random_mixture(dim=3, num_components=3, seed=2)
KEY = jax.random.PRNGKey(7)
TOL, F32_TOL = 1e-6, 1e-5
F32_STEPS = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")  # step casts the sample to float32

# google/ddpm-cifar10-32's scheduler_config.json (Ho et al. 2020's CIFAR-10 model), as published
DDPM_CIFAR10 = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.1.1", "beta_end": 0.02,
                "beta_schedule": "linear", "beta_start": 0.0001, "clip_sample": True, "num_train_timesteps": 1000,
                "trained_betas": None, "variance_type": "fixed_small"}


_denoise = jax.jit(GMM.denoise)  # one compile (float64, (8, 3)) for every diffusers loop


def _gmm_output(x: torch.Tensor, alpha: float, sigma: float, prediction_type: str) -> torch.Tensor:
    """The exact model output (float64) at x = alpha x0 + sigma eps; diffusers' side holds the
    samples as (batch, dim, 1) (its thresholding needs a channel axis)."""
    x0, eps = _denoise(jnp.asarray(x.detach().numpy()[..., 0], jnp.float64), alpha, sigma)
    out = {"epsilon": eps, "sample": x0, "v_prediction": alpha * eps - sigma * x0}[prediction_type]
    return torch.from_numpy(np.array(out)[..., None])


def _step_noises(shape, num_steps):
    """The z_i of ``sample(..., KEY)``: the step key split into one key per step."""
    _, step_key = jax.random.split(KEY)
    return [np.array(jax.random.normal(k, shape, jnp.float64)) for k in jax.random.split(step_key, num_steps)]


@contextlib.contextmanager
def _noise_fed(scheduler, noises):
    """diffusers' step draws its noise with its module's ``randn_tensor``: hand it ``noises`` in turn."""
    module = inspect.getmodule(type(scheduler))
    if not hasattr(module, "randn_tensor"):  # a deterministic scheduler
        yield
        return
    queue = iter(noises)
    original = module.randn_tensor
    module.randn_tensor = lambda shape, **kw: torch.from_numpy(next(queue)).reshape(shape).to(kw.get("dtype")
                                                                                          or torch.float64)
    try:
        yield
    finally:
        module.randn_tensor = original


def _diffusers(config: dict, steps: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cls = getattr(diffusers, config["_class_name"])
        scheduler = cls.from_config({k: v for k, v in config.items() if k != "_class_name"})
        scheduler.set_timesteps(steps)
    return scheduler


def _float64_sigmas(config, steps, scheduler):
    """diffusers' sigma table of ``scheduler`` recomputed in float64 by diffusers' own formulas: the
    training sigmas sqrt((1 - a)/a) at its timesteps (interpolated linearly in t for Euler/Heun), or
    its Karras ramp between the same end points; then the final sigma; Heun repeats inner points."""
    ac = scheduler.alphas_cumprod.double().numpy()
    table = np.sqrt((1.0 - ac) / ac)
    karras = config.get("use_karras_sigmas", False)
    sigma_based = isinstance(scheduler, (diffusers.EulerDiscreteScheduler, diffusers.EulerAncestralDiscreteScheduler,
                                         diffusers.HeunDiscreteScheduler))
    if sigma_based:
        plain = _diffusers({**config, "use_karras_sigmas": False} if karras else config, steps)
        ts = plain.timesteps.double().numpy()
        if isinstance(scheduler, diffusers.HeunDiscreteScheduler):
            ts = np.concatenate([ts[:1], ts[1::2]])
        s = np.interp(ts, np.arange(len(table)), table)
    else:
        s = table[scheduler.timesteps.numpy().astype(np.int64)]
        if karras:
            s = np.flip(table)
    if karras:
        s = np.asarray(scheduler._convert_to_karras(in_sigmas=s, num_inference_steps=steps), np.float64)
    last = table[0] if config.get("final_sigmas_type") == "sigma_min" or (
        isinstance(scheduler, diffusers.DEISMultistepScheduler)) else 0.0
    s = np.concatenate([s, [last]])
    if isinstance(scheduler, diffusers.HeunDiscreteScheduler):
        s = np.concatenate([s[:1], np.repeat(s[1:-1], 2), s[-1:]])
    return s


def _use_float64_sigmas(config, steps, scheduler):
    s = _float64_sigmas(config, steps, scheduler)
    theirs = scheduler.sigmas.double().numpy()
    assert theirs.shape == s.shape
    np.testing.assert_allclose(s, theirs, rtol=3e-6, atol=0)
    scheduler.sigmas = torch.from_numpy(s)


def _run_diffusers(scheduler, config, x_T, noises):
    """diffusers' loop, float64, from our x_T (VP scale); returns the final sample (VP scale = data)."""
    prediction = config.get("prediction_type", "epsilon")
    has_sigmas = hasattr(scheduler, "sigmas")
    x = torch.from_numpy(x_T[..., None].copy())
    if has_sigmas and float(scheduler.init_noise_sigma) != 1.0:  # the VE-scaled variable x / alpha
        s0 = float(scheduler.sigmas[0])
        x = x * (1.0 + s0 * s0) ** 0.5
    with _noise_fed(scheduler, noises):
        for i, t in enumerate(scheduler.timesteps):
            inp = scheduler.scale_model_input(x, t)
            if has_sigmas:
                s = float(scheduler.sigmas[scheduler.step_index if scheduler.step_index is not None else i])
                alpha, sigma = 1.0 / (1.0 + s * s) ** 0.5, s / (1.0 + s * s) ** 0.5
            else:
                ac = float(scheduler.alphas_cumprod.double()[int(t)])
                alpha, sigma = ac**0.5, (1.0 - ac) ** 0.5
            x = scheduler.step(_gmm_output(inp, alpha, sigma, prediction), t, x).prev_sample
    return x.double().numpy()[..., 0]


def _ours(sampler, schedule, prediction_type, x_T):
    predicts = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}[prediction_type]
    out = sample(sampler, GMM.model_fn(schedule, predicts), jnp.asarray(x_T), KEY)
    return np.asarray(out.x), int(out.nfe)


def _gap(config, steps, sampler=None):
    """max |ours - diffusers| / max |diffusers| for ``config`` (or the given ``sampler`` against it)."""
    config = {**config}
    built, schedule = samplers.from_diffusers(config, steps)
    sampler = built if sampler is None else sampler
    scheduler = _diffusers(config, steps)
    np.testing.assert_array_equal(schedule.log_alphas, 0.5 * np.log(scheduler.alphas_cumprod.double().numpy()))
    if hasattr(scheduler, "sigmas"):
        _use_float64_sigmas(config, steps, scheduler)
    else:  # DDIM/DDPM step with alphas_cumprod (and the 1 or alphas_cumprod[0] after the last timestep)
        scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()
        for name in ("final_alpha_cumprod", "one"):
            if hasattr(scheduler, name):
                setattr(scheduler, name, getattr(scheduler, name).double())
    x_T = np.random.default_rng(0).standard_normal((8, GMM.dim))
    ours, nfe = _ours(sampler, schedule, config.get("prediction_type", "epsilon"), x_T)
    ref = _run_diffusers(scheduler, config, x_T, _step_noises(x_T.shape, sampler.num_steps))
    assert nfe == sampler.nfe == len(scheduler.timesteps)
    assert np.all(np.isfinite(ref))
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


def C(name, **fields):
    return {"_class_name": name, **fields}


# (config, steps): each class, several options (spacings, offsets, orders, final sigmas, Karras,
# algorithm and solver types, prediction types, clipping and thresholding)
CASES = [
    (C("DDIMScheduler", clip_sample=False), 10),
    (C("DDIMScheduler", clip_sample=False, steps_offset=1, set_alpha_to_one=False, beta_schedule="scaled_linear",
       beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction"), 25),
    (C("DDIMScheduler", clip_sample=False, timestep_spacing="trailing", beta_schedule="squaredcos_cap_v2"), 10),
    (C("DDPMScheduler", clip_sample=False), 20),
    (C("DDPMScheduler", clip_sample=False, variance_type="fixed_large", timestep_spacing="linspace",
       prediction_type="sample"), 10),
    (DDPM_CIFAR10, 20),
    (C("EulerDiscreteScheduler"), 10),
    (C("EulerDiscreteScheduler", use_karras_sigmas=True, timestep_spacing="leading", steps_offset=1), 12),
    (C("EulerAncestralDiscreteScheduler"), 10),
    (C("EulerAncestralDiscreteScheduler", timestep_spacing="trailing", prediction_type="v_prediction"), 8),
    (C("HeunDiscreteScheduler", use_karras_sigmas=True), 8),
    (C("HeunDiscreteScheduler", timestep_spacing="trailing", beta_start=0.0001, beta_end=0.02), 6),
    (C("DPMSolverMultistepScheduler", use_karras_sigmas=True), 10),
    (C("DPMSolverMultistepScheduler", algorithm_type="dpmsolver", solver_order=3, final_sigmas_type="sigma_min",
       timestep_spacing="trailing"), 10),
    (C("DPMSolverMultistepScheduler", solver_order=3, solver_type="heun", timestep_spacing="leading",
       steps_offset=1, euler_at_final=True, prediction_type="v_prediction"), 16),
    (C("DPMSolverMultistepScheduler", thresholding=True, sample_max_value=1.5, dynamic_thresholding_ratio=0.9), 10),
    (C("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++"), 10),
    (C("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver", solver_type="heun",
       final_sigmas_type="sigma_min"), 12),
    (C("DPMSolverSinglestepScheduler", solver_order=3, solver_type="heun"), 10),
    (C("DPMSolverSinglestepScheduler", algorithm_type="dpmsolver", final_sigmas_type="sigma_min"), 9),
    (C("DPMSolverSinglestepScheduler", solver_order=3, solver_type="heun", final_sigmas_type="sigma_min",
       lower_order_final=False), 9),
    (C("DPMSolverSinglestepScheduler", use_karras_sigmas=True), 8),
    (C("UniPCMultistepScheduler", solver_order=3, timestep_spacing="trailing"), 8),
    (C("UniPCMultistepScheduler", solver_type="bh1", final_sigmas_type="sigma_min", disable_corrector=[0, 2]), 8),
    (C("DEISMultistepScheduler", solver_order=3, timestep_spacing="leading", steps_offset=1), 8),
]


def _id(case):
    config, steps = case
    return config["_class_name"].replace("Scheduler", "") + "-" + "-".join(
        f"{k}={v}" for k, v in config.items() if not k.startswith("_") and k in ("algorithm_type", "solver_order",
                                                                                 "timestep_spacing",
                                                                                 "use_karras_sigmas",
                                                                                 "variance_type",
                                                                                 "final_sigmas_type",
                                                                                 "clip_sample")) + f"-{steps}"


@pytest.mark.parametrize("config,steps", CASES, ids=[_id(c) for c in CASES])
def test_matches_diffusers(x64, config, steps):
    gap = _gap(config, steps)
    float32_step = config["_class_name"] in F32_STEPS or config.get("algorithm_type", "").startswith("sde-")
    tol = F32_TOL if float32_step else TOL
    print(f"{_id((config, steps))}: gap {gap:.2e}")
    assert gap <= tol


def _sigma_grid_of(config, steps):
    from samplers.from_diffusers import _sigma_grid
    return _sigma_grid(_Config(config), samplers.from_diffusers(config, steps)[1], steps)


def test_parity_check_rejects_a_wrong_sampler(x64):
    """Control: the check above fails for a sampler one option away from the config's."""
    from samplers.grids import time_grid
    from samplers.sde.ancestral import ddim_eta, ddpm

    _, schedule = samplers.from_diffusers(DDPM_CIFAR10, 20)
    grid = time_grid(schedule, timesteps=np.arange(19, -1, -1) * 50.0, final="zero")  # "leading", 20 steps
    assert _gap(DDPM_CIFAR10, 20, ddpm(schedule, grid, thresholding={"max_value": 1.0})) <= TOL  # the same sampler
    assert _gap(DDPM_CIFAR10, 20, ddpm(schedule, grid)) > 100 * TOL  # without clip_sample's x0 clipping
    assert _gap(DDPM_CIFAR10, 20, ddpm(schedule, grid, variance="large", thresholding={"max_value": 1.0})) > 100 * TOL
    ancestral = C("EulerAncestralDiscreteScheduler")
    _, schedule = samplers.from_diffusers(ancestral, 10)
    assert _gap(ancestral, 10, ddim_eta(schedule, _sigma_grid_of(ancestral, 10), eta=0.9)) > 100 * F32_TOL


def test_ddpm_cifar10_config_loads_from_a_file_and_samples(tmp_path):
    """The published DDPM-CIFAR10 scheduler config, read from its file (and its directory): 1000
    ancestral steps with x0 clipped to [-1, 1], float32, finite samples inside the data's range."""
    (tmp_path / "scheduler_config.json").write_text(json.dumps(DDPM_CIFAR10))
    assert load_config(tmp_path) == load_config(str(tmp_path / "scheduler_config.json")) == DDPM_CIFAR10
    sampler, schedule = samplers.from_diffusers(str(tmp_path), 1000)
    assert sampler.nfe == 1000 and schedule.num_train_timesteps == 1000
    x = jax.random.normal(jax.random.PRNGKey(0), (16, GMM.dim))
    out = jax.jit(sample, static_argnums=(0, 1))(sampler, GMM.model_fn(schedule, "eps"), x, KEY)
    assert out.x.dtype == jnp.float32 and int(out.nfe) == 1000
    assert np.all(np.isfinite(out.x)) and np.max(np.abs(out.x)) <= 1.0 + 1e-6  # the last step returns clipped x0


def test_defaults_are_diffusers_defaults():
    """Every field of each supported class, with diffusers' default: a config that omits a field
    gets diffusers' value, and no field diffusers reads is left unchecked."""
    for name, fields in FIELDS.items():
        params = inspect.signature(getattr(diffusers, name).__init__).parameters
        theirs = {k: p.default for k, p in params.items() if k != "self"}
        assert fields == theirs, name


def test_schedule_is_diffusers_float32_table():
    for config in (C("DDPMScheduler"), C("DDIMScheduler", beta_schedule="scaled_linear", beta_start=0.00085,
                                        beta_end=0.012), C("DDIMScheduler", beta_schedule="squaredcos_cap_v2"),
                   C("DDIMScheduler", num_train_timesteps=100, trained_betas=list(np.linspace(1e-3, 0.1, 100)))):
        theirs = _diffusers(config, 10).alphas_cumprod.numpy()
        np.testing.assert_array_equal(alphas_cumprod(_Config(config)), theirs.astype(np.float64))


UNSUPPORTED = [
    (C("PNDMScheduler"), "_class_name"),
    (C("DDIMScheduler", bogus=1), "bogus"),
    (C("DDIMScheduler"), "clip_sample"),  # DDIM's default clips with the unclipped noise
    (C("DDIMScheduler", clip_sample=False, timestep_spacing="linspace"), "timestep_spacing"),
    (C("DDIMScheduler", clip_sample=False, rescale_betas_zero_snr=True), "rescale_betas_zero_snr"),
    (C("DDPMScheduler", variance_type="learned_range"), "variance_type"),
    (C("DDPMScheduler", variance_type="fixed_large", timestep_spacing="trailing"), "variance_type"),
    (C("DDPMScheduler", clip_sample_range=2.0), "clip_sample_range"),
    (C("DDPMScheduler", beta_schedule="sigmoid"), "beta_schedule"),
    (C("DDPMScheduler", prediction_type="flow_prediction"), "prediction_type"),
    (C("DDPMScheduler", num_train_timesteps=1.5), "num_train_timesteps"),
    (C("DDPMScheduler", beta_end=1.5), "beta_start/beta_end"),
    (C("DDPMScheduler", num_train_timesteps=3, trained_betas=[0.1, 0.2, 1.0]), "trained_betas"),
    (C("EulerDiscreteScheduler", final_sigmas_type="sigma_min"), "final_sigmas_type"),
    (C("EulerDiscreteScheduler", interpolation_type="log_linear"), "interpolation_type"),
    (C("EulerDiscreteScheduler", use_exponential_sigmas=True), "use_exponential_sigmas"),
    (C("HeunDiscreteScheduler", clip_sample=True), "clip_sample"),
    (C("DPMSolverMultistepScheduler", solver_order=4), "solver_order"),
    (C("DPMSolverMultistepScheduler", algorithm_type="sde-dpmsolver++", solver_order=3), "solver_order"),
    (C("DPMSolverMultistepScheduler", algorithm_type="dpmsolver", thresholding=True), "thresholding"),
    (C("DPMSolverMultistepScheduler", use_karras_sigmas=True, final_sigmas_type="sigma_min"), "use_karras_sigmas"),
    (C("DPMSolverMultistepScheduler", euler_at_final=True, final_sigmas_type="sigma_min"), "euler_at_final"),
    (C("DPMSolverMultistepScheduler", use_lu_lambdas=True), "use_lu_lambdas"),
    (C("DPMSolverMultistepScheduler", variance_type="learned_range"), "variance_type"),
    (C("DPMSolverMultistepScheduler", solver_type="bh2"), "solver_type"),
    (C("DPMSolverSinglestepScheduler", algorithm_type="sde-dpmsolver++"), "algorithm_type"),
    (C("UniPCMultistepScheduler", use_karras_sigmas=True), "use_karras_sigmas"),
    (C("UniPCMultistepScheduler", solver_type="bh1"), "solver_type"),
    (C("DEISMultistepScheduler", thresholding=True), "thresholding"),
    (C("DEISMultistepScheduler", timestep_spacing="uniform"), "timestep_spacing"),
]


@pytest.mark.parametrize("config,field", UNSUPPORTED, ids=[f"{c['_class_name']}-{f}" for c, f in UNSUPPORTED])
def test_unsupported_field_is_named(config, field):
    with pytest.raises(ValueError, match=field):
        samplers.from_diffusers(config, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_inference_steps"):
        samplers.from_diffusers(C("DDPMScheduler"), 0)
    with pytest.raises(ValueError, match="config"):
        samplers.from_diffusers(42, 10)
    with pytest.raises(ValueError, match="config"):
        samplers.from_diffusers("/nonexistent/scheduler_config.json", 10)

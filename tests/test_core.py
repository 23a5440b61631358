"""The Sampler core, schedules, grids, converters, the analytic mixture and the reference solver."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture, random_mixture
from samplers import param, registry, schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.ode.common import predictor
from samplers.reference import denoiser_from_model, pf_ode_trajectory, reference_sample, solve_pf_ode

ALL_SCHEDULES = ["vp_linear", "vp_cosine", "vp_discrete", "ve", "edm", "flow"]


@pytest.mark.parametrize("name", ALL_SCHEDULES)
def test_schedule_lambda_inverse(name):
    sch = schedules.get_schedule(name)
    t = np.linspace(sch.t_min, sch.t_max, 50)[1:-1]
    lam = sch.lambda_(t)
    assert np.allclose(sch.t_from_lambda(lam), t, rtol=1e-9, atol=1e-9 * sch.t_max)
    # numpy and jax agree, and alpha^2 + sigma^2 = 1 for VP schedules
    with jax.enable_x64(True):
        assert np.allclose(np.asarray(sch.lambda_(jnp.asarray(t))), lam, rtol=1e-12)
    if sch.is_vp:
        assert np.allclose(sch.alpha(t) ** 2 + sch.sigma(t) ** 2, 1.0)


def test_discrete_schedule_matches_alphas_cumprod():
    betas = schedules.ddpm_betas(1000)
    sch = schedules.vp_discrete(betas)
    ac = np.cumprod(1 - betas)
    t = np.arange(0, 1000, 37, dtype=np.float64)
    assert np.allclose(sch.alpha(t) ** 2, ac[t.astype(int)], rtol=1e-12)


def test_grid_spacings():
    sch = schedules.vp_linear()
    g = time_grid(sch, 10, "logsnr")
    assert np.allclose(np.diff(g.lam), np.diff(g.lam)[0])
    g = time_grid(sch, 10, "uniform")
    assert np.allclose(np.diff(g.t), np.diff(g.t)[0])
    g = time_grid(sch, 10, "quadratic")
    assert np.allclose(np.diff(np.sqrt(g.t)), np.diff(np.sqrt(g.t))[0])
    g = time_grid(schedules.edm(), 10, "karras")
    s = g.sigma ** (1 / 7)
    assert np.allclose(np.diff(s), np.diff(s)[0])
    g = time_grid(sch, 10, "logsnr", final="zero")
    assert g.num_steps == 10 and g.sigma[-1] == 0 and g.alpha[-1] == 1 and g.final_zero


def test_discrete_spacings_match_diffusers():
    from diffusers import DPMSolverMultistepScheduler

    sch = schedules.vp_discrete()
    for spacing in ["linspace", "leading", "trailing"]:
        ref = DPMSolverMultistepScheduler(timestep_spacing=spacing)
        ref.set_timesteps(12)
        g = time_grid(sch, 12, spacing)
        assert np.array_equal(g.t[:-1], ref.timesteps.numpy().astype(np.float64)), spacing
        assert g.final_zero


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(timesteps=[0.5, 0.7, 0.9]), "strictly decreasing"),
        (dict(timesteps=[0.9, 0.5, 0.5]), "strictly decreasing"),
        (dict(timesteps=[1.5, 0.5]), "must lie in"),
        (dict(num_steps=0), "num_steps"),
        (dict(num_steps=5, spacing="cosine"), "spacing must be one of"),
        (dict(num_steps=5, spacing="leading"), "needs the vp_discrete"),
        (dict(num_steps=5, final="end"), "final must be one of"),
        (dict(num_steps=5, t_start=0.1, t_end=0.5), "must be greater"),
    ],
)
def test_grid_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_grid(schedules.vp_linear(), **kwargs)


def test_bad_names_and_predictions():
    with pytest.raises(ValueError, match=r"schedule must be one of .*vp_linear"):
        schedules.get_schedule("vp_quadratic")
    with pytest.raises(ValueError, match=r"sampler name must be one of .*ddim"):
        registry.build("dddim", schedules.vp_linear(), 10)
    with pytest.raises(ValueError, match="nfe must be an integer >= 1"):
        registry.build("ddim", schedules.vp_linear(), 0)
    with pytest.raises(ValueError, match=r"predicts must be one of .*'eps'"):
        ddim(schedules.vp_linear(), time_grid(schedules.vp_linear(), 5), predicts="noise")
    with pytest.raises(ValueError, match="grid must be a TimeGrid"):
        ddim(schedules.vp_linear(), np.linspace(1, 0.01, 5))
    with pytest.raises(ValueError, match="thresholding applies to data-prediction"):
        predictor(schedules.edm(), "x0", "eps", thresholding={"ratio": 0.9})
    for bad, match in [({"ratio": 1.5}, "ratio must be in"), ({"max_value": 0.5}, "max_value must be"),
                       ({"percentile": 0.9}, "keys must be among")]:
        with pytest.raises(ValueError, match=match):
            predictor(schedules.vp_linear(), "eps", "x0", thresholding=bad)


@pytest.mark.parametrize("name", ["vp_linear", "vp_discrete", "edm", "flow"])
def test_converters_round_trip(x64, name):
    sch = schedules.get_schedule(name)
    t = jnp.asarray(0.5 * (sch.t_min + sch.t_max))
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3), jnp.float64)
    eps = jax.random.normal(jax.random.PRNGKey(1), (5, 3), jnp.float64)
    for src in param.PREDICTIONS:
        p = param.convert(eps, x, t, sch, "eps", src)
        for dst in param.PREDICTIONS:
            q = param.convert(p, x, t, sch, src, dst)
            assert np.allclose(param.convert(q, x, t, sch, dst, "eps"), eps, rtol=1e-10, atol=1e-10), (src, dst)


def test_gmm_score_is_gradient_of_log_density(x64):
    gmm = random_mixture(dim=3, num_components=4, seed=3)
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 3), jnp.float64)
    for alpha, sigma in [(1.0, 0.0), (0.8, 0.6), (0.1, 0.995)]:
        auto = jax.grad(lambda z: gmm.log_prob_t(z, alpha, sigma).sum())(x)
        assert np.allclose(gmm.score_t(x, alpha, sigma), auto, rtol=1e-9, atol=1e-9)
        x0, eps = gmm.denoise(x, alpha, sigma)
        assert np.allclose(alpha * x0 + sigma * eps, x, rtol=1e-10, atol=1e-10)
        if sigma > 0:
            assert np.allclose(eps, -sigma * auto, rtol=1e-9, atol=1e-9)


def test_gmm_samples_and_moments():
    gmm = random_mixture(dim=2, num_components=3, seed=0, diagonal=True)
    xs = np.asarray(gmm.sample(jax.random.PRNGKey(0), 200_000), np.float64)
    assert np.allclose(xs.mean(0), gmm.mean, atol=0.02)
    assert np.allclose(np.cov(xs.T), gmm.cov, atol=0.05)
    # the exact log density integrates to one (2-D quadrature on a wide box)
    g = np.linspace(-10, 10, 401)
    pts = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2))
    mass = float(jnp.exp(gmm.log_prob(pts)).sum()) * (g[1] - g[0]) ** 2
    assert abs(mass - 1.0) < 1e-3


def test_reference_solver_matches_closed_form_gaussian(x64):
    # one Gaussian N(mu, C): the PF-ODE in y = x/alpha, s = sigma/alpha is linear with
    # solution y(s) = mu + (C + s^2)^{1/2} (C + s0^2)^{-1/2} (y0 - mu) in C's eigenbasis.
    c = np.array([[1.0, 0.3], [0.3, 0.5]])
    mu = np.array([1.0, -2.0])
    gmm = GaussianMixture([1.0], mu[None], c[None])
    sch = schedules.vp_linear()
    grid = time_grid(sch, 4, final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2), jnp.float64)
    got = reference_sample(gmm.denoise, x, grid)
    w, u = np.linalg.eigh(c)
    s0 = grid.sigma[0] / grid.alpha[0]
    y0 = np.asarray(x) / grid.alpha[0]
    z = (y0 - mu) @ u * np.sqrt(w / (w + s0**2))
    assert np.allclose(got, mu + z @ u.T, rtol=1e-8, atol=1e-8)
    # a generic model_fn gives the same path as the exact denoiser on interior points
    mid = time_grid(sch, 4, t_end=0.05)
    via_model = solve_pf_ode(denoiser_from_model(gmm.model_fn(sch, "v"), sch, "v"), x,
                             mid.alpha[0], mid.sigma[0], mid.alpha[-1], mid.sigma[-1])
    assert np.allclose(via_model, reference_sample(gmm.denoise, x, mid), rtol=1e-7, atol=1e-7)


def test_reference_trajectory_matches_closed_form_gaussian_at_every_point(x64):
    """``pf_ode_trajectory`` (one solve saved at every grid point) against the Gaussian's closed form (as above)
    at each point; CONTROL: the closed form of the neighbouring point is rejected by the same check."""
    c, mu = np.array([[1.0, 0.3], [0.3, 0.5]]), np.array([1.0, -2.0])
    gmm, sch = GaussianMixture([1.0], mu[None], c[None]), schedules.vp_linear()
    grid = time_grid(sch, 6, final="zero")
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 2), jnp.float64)
    traj = pf_ode_trajectory(gmm.denoise, x, grid)
    w, u = np.linalg.eigh(c)
    s = grid.sigma / grid.alpha
    z0 = (np.asarray(x) / grid.alpha[0] - mu) @ u
    exact = np.stack([grid.alpha[k] * (mu + (z0 * np.sqrt((w + s[k] ** 2) / (w + s[0] ** 2))) @ u.T)
                      for k in range(len(s))])
    assert traj.shape == (7, 4, 2) and np.allclose(traj, exact, rtol=1e-8, atol=1e-8)
    assert not np.allclose(traj[1:], exact[:-1], rtol=1e-8, atol=1e-8)


def test_sample_compiles_once_and_records_trajectory():
    sch = schedules.vp_linear()
    gmm = random_mixture(dim=2, seed=0)
    smp = ddim(sch, time_grid(sch, 8))
    model = gmm.model_fn(sch, "eps")
    traces = []

    def counted(x, t):
        traces.append(1)
        return model(x, t)

    run = jax.jit(sample, static_argnums=(0, 1))
    for seed in range(3):
        x = jax.random.normal(jax.random.PRNGKey(seed), (16, 2))
        run(smp, counted, x).x.block_until_ready()
    assert len(traces) == 1, "sample re-traced for the same sampler and shape"
    final, traj = sample(smp, model, x, trajectory=True)
    assert traj.x.shape == (8, 16, 2) and np.allclose(traj.x[-1], final.x)
    _, xs = sample(smp, model, x, trajectory=lambda s: s.x)
    assert np.allclose(xs, traj.x)
    assert final.x.dtype == jnp.float32


def _spends_exactly(smp, sch, predicts, budget: int) -> bool:
    """The sampler makes exactly ``budget`` model calls, and both its declared ``nfe`` and the
    ``state.nfe`` it counts are that number."""
    model = random_mixture(dim=2, seed=0).model_fn(sch, predicts)
    calls = []

    def counted(x, t):
        calls.append(1)
        return model(x, t)

    with jax.disable_jit():
        out = sample(smp, counted, jnp.ones((3, 2)))
    return len(calls) == int(out.nfe) == smp.nfe == budget


@pytest.mark.parametrize("name", [n for n in registry.names() if n != "dpm_solver_adaptive"])
def test_nfe_counts_real_model_calls(name):
    sch = schedules.vp_linear() if not name.startswith("rk_") else schedules.flow(t_max=0.999)
    predicts = "velocity" if name.startswith("rk_") else "eps"
    assert _spends_exactly(registry.build(name, sch, 12, predicts), sch, predicts, 12)


def test_adaptive_budget_is_a_cap_with_a_minimum():
    """dpm_solver_adaptive's calls are set by its tolerance: the registry's budget caps them (the real calls,
    counted, are the state's nfe and at most the cap) and is refused below ``registry.ADAPTIVE_MIN_NFE``."""
    sch = schedules.vp_linear()
    smp = registry.build("dpm_solver_adaptive", sch, registry.ADAPTIVE_MIN_NFE)
    model = random_mixture(dim=2, seed=0).model_fn(sch, "eps")
    calls = []
    with jax.disable_jit():
        out = sample(smp, lambda x, t: calls.append(1) or model(x, t), jnp.ones((3, 2)))
    assert bool(out.done) and len(calls) == int(out.nfe) < smp.nfe <= registry.ADAPTIVE_MIN_NFE
    with pytest.raises(ValueError, match="nfe must be >= 100 for sampler 'dpm_solver_adaptive'"):
        registry.build("dpm_solver_adaptive", sch, registry.ADAPTIVE_MIN_NFE - 1)


def test_nfe_count_control():
    """The same check rejects a declared budget one short and a step that counts a call it did not make."""
    sch = schedules.vp_linear()
    smp = registry.build("dpm_solver_pp_2m", sch, 12, "eps")
    assert _spends_exactly(smp, sch, "eps", 12)
    assert not _spends_exactly(smp._replace(nfe=11), sch, "eps", 12)
    overcounts = smp._replace(step=lambda state, key, fn: (lambda s: s.replace(nfe=s.nfe + (s.i == 1)))(
        smp.step(state, key, fn)))
    assert not _spends_exactly(overcounts, sch, "eps", 12)


def test_classifier_free_guidance_and_thresholding():
    calls = []

    def model(x, t, c):  # a conditional "model": its output depends on the label c
        calls.append(x.shape[0])
        return x * t + c[:, None]

    x = jnp.arange(6.0).reshape(3, 2)
    cond, uncond = jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3)
    out = param.classifier_free_guidance(model, 3.0, cond, uncond)(x, 0.5)
    u, c = x * 0.5, x * 0.5 + cond[:, None]
    assert np.allclose(out, u + 3.0 * (c - u))
    assert calls == [6], "guidance must be one batched call"
    x0 = jnp.array([[0.5, -3.0, 2.0, 0.1], [0.2, 0.3, -0.4, 0.1]])
    th = param.dynamic_threshold(x0, ratio=1.0, max_value=2.0)
    assert np.allclose(th[0], jnp.clip(x0[0], -2.0, 2.0) / 2.0)  # s = min(max|x0|, max_value)
    assert np.allclose(th[1], x0[1])  # s clamps at 1: inside [-1, 1] nothing changes

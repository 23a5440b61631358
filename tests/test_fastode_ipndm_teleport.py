"""iPNDM (samplers/ode/ipndm.py) and Gaussian teleportation (samplers/ode/teleport.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture, random_mixture
from samplers import registry, schedules
from samplers.accuracy import Reference, rms
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.common import predictor
from samplers.ode.ddim import ddim
from samplers.ode.ipndm import ipndm, ipndm_coefficients
from samplers.ode.multistep import linear_multistep
from samplers.ode.teleport import gaussian_flow_map, teleport
from samplers.reference import reference_sample
from tests.ode_utils import GMM, convergence, fitted_order, start_noise

STEPS = (10, 20, 40)


def _ipndm_wrong(schedule, grid, predicts):
    """CONTROL: iPNDM-4 with its second Adams-Bashforth weight 10% off (weights no longer sum to 1)."""
    A, B = ipndm_coefficients(grid, 4)
    B[4:, 1] *= 1.1
    return linear_multistep(grid, predictor(schedule, predicts, "eps"), A, B)


def test_ipndm_converges_and_wrong_weight_does_not(x64):
    build = lambda s, g, p: ipndm(s, g, p)
    nfes, errs = convergence(build, "vp_linear", STEPS, t_end=1e-3)
    _, errs_ddim = convergence(ddim, "vp_linear", STEPS, t_end=1e-3)
    _, errs_bad = convergence(_ipndm_wrong, "vp_linear", STEPS, t_end=1e-3)
    assert list(nfes) == list(STEPS)
    assert fitted_order(nfes, errs) > 1.8, errs  # warm-up steps of order 1..3 bound the global order
    assert errs[-1] < 0.1 * errs_ddim[-1], (errs, errs_ddim)
    assert fitted_order(nfes, errs_bad) < 1.0, errs_bad  # the control is rejected: no convergence
    assert errs_bad[-1] > 0.1 * errs_ddim[-1]


def test_ipndm_order1_is_ddim_and_finite_at_sigma_zero(x64):
    sch = schedules.get_schedule("vp_discrete")
    grid = time_grid(sch, 6, "linspace")  # last step to sigma = 0
    assert np.all(np.isfinite(ipndm_coefficients(grid, 4)[1]))
    x = start_noise(8)
    mf = GMM.model_fn(sch, "eps")
    run = jax.jit(sample, static_argnums=(0, 1))
    np.testing.assert_allclose(run(ipndm(sch, grid, order=1), mf, x).x, run(ddim(sch, grid), mf, x).x, atol=1e-10)


def test_ipndm_bad_args():
    sch = schedules.get_schedule("vp_linear")
    with pytest.raises(ValueError, match="order"):
        ipndm(sch, time_grid(sch, 4), order=5)
    flow = schedules.get_schedule("flow")
    with pytest.raises(ValueError, match="alpha > 0"):
        ipndm(flow, time_grid(flow, 4, "uniform", t_start=1.0, t_end=0.1))


GAUSS = GaussianMixture([1.0], [[1.0, -2.0, 0.5]], [[[2.0, 0.3, 0.0], [0.3, 0.5, 0.1], [0.0, 0.1, 0.05]]])


def test_teleport_is_the_exact_gaussian_flow(x64):
    sch = schedules.get_schedule("vp_discrete")
    grid = time_grid(sch, 1, "uniform", t_start=999.0, t_end=150.0)
    x = np.asarray(start_noise(16, dim=3)) * float(np.hypot(grid.alpha[0], grid.sigma[0]))
    exact = np.asarray(reference_sample(GAUSS.denoise, jnp.asarray(x), grid))
    err = lambda cov: np.max(np.abs(x @ gaussian_flow_map(sch, GAUSS.mean, cov, 999.0, 150.0)[0].T
                                    + gaussian_flow_map(sch, GAUSS.mean, cov, 999.0, 150.0)[1] - exact))
    assert err(GAUSS.cov) < 1e-6
    assert err(1.1 * GAUSS.cov) > 1e-3  # CONTROL: 10% wrong covariance is rejected by the same bound
    # wrapped around a solver: same calls, the solver started from the teleported point
    g1 = time_grid(sch, 4, "logsnr", t_start=150.0, final="zero")
    mf = GAUSS.model_fn(sch, "eps")
    run = jax.jit(sample, static_argnums=(0, 1))
    tele = teleport(ddim(sch, g1), sch, GAUSS.mean, GAUSS.cov, 999.0, 150.0)
    out = run(tele, mf, jnp.asarray(x))
    assert int(out.nfe) == tele.nfe == 4
    np.testing.assert_allclose(out.x, run(ddim(sch, g1), mf, jnp.asarray(exact)).x, atol=1e-6)
    with pytest.raises(ValueError, match="t0"):
        teleport(ddim(sch, g1), sch, GAUSS.mean, GAUSS.cov, 100.0, 150.0)
    with pytest.raises(ValueError, match="cov"):
        gaussian_flow_map(sch, GAUSS.mean, np.eye(2), 999.0, 150.0)


def test_teleport_on_edm_beats_the_default_and_keeps_its_accuracy(x64):
    """End to end on an EDM model (sigma 80 to 0.002, the registry's Karras defaults), the protocol of
    bench/fastode_edm.py (table 2): the Gaussian fitted to 4096 data samples carries 256 noise draws from sigma 80 to
    sigma_1 = 20 (chosen on other mixtures), then the solver runs its default grid from 20 with the same calls.
    RMS against the exact PF-ODE, ratio to the same solver from 80, on two 8-d mixtures (neither seen when sigma_1
    was chosen). (1) At 5 calls, Euler and DPM-Solver++(2M) teleported are < 0.9x the default (measured
    0.75-0.84): the calls not spent above sigma 20. That gain does not need the right map (a 10%-too-large one
    gives 0.60-0.62), so (1) has no map control; (2) is the map's check: DPM-Solver++(2M) at 20 calls, where the
    default is accurate, teleported is within 1.05x of it (measured 0.985 / 0.952). CONTROLS for (2): the map 10%
    too large (2.77 / 1.86) and teleporting on to sigma 5, where the mixture's flow is no longer the Gaussian's
    (1.49 / 1.31), fail it."""
    edm, sigma_1, run = schedules.edm(), 20.0, jax.jit(sample, static_argnums=(0, 1))
    for seed in (4, 2):
        gmm = random_mixture(dim=8, num_components=4, seed=seed)
        data = np.asarray(gmm.sample(jax.random.PRNGKey(4), 4096, jnp.float64))
        mean, cov = data.mean(0), np.cov(data.T)
        ref = Reference(gmm.denoise, np.asarray(jax.random.normal(jax.random.PRNGKey(7), (256, 8), jnp.float64)))
        a0, s0 = float(edm.alpha(edm.t_max)), float(edm.sigma(edm.t_max))
        mf, x, exact = gmm.model_fn(edm, "eps"), jnp.asarray(ref.start(a0, s0)), ref(a0, s0, 1.0, 0.0)

        def ratio(name, nfe, t1=sigma_1, scale=None):
            """Teleported RMS / default RMS; with ``scale``, the map x1 = scale P x + c by hand (a wrong map)."""
            base = registry.build(name, edm, nfe, t_start=t1)
            if scale is None:
                smp = teleport(base, edm, mean, cov, edm.t_max, t1)
            else:
                p, c = (jnp.asarray(v) for v in gaussian_flow_map(edm, mean, cov, edm.t_max, t1))
                smp = base._replace(init=lambda x, key=None, model_fn=None: base.init(scale * x @ p.T + c, key,
                                                                                      model_fn))
            return rms(run(smp, mf, x).x, exact) / rms(run(registry.build(name, edm, nfe), mf, x).x, exact)

        assert ratio("euler", 5) < 0.9 and ratio("dpm_solver_pp_2m", 5) < 0.9, seed
        assert ratio("dpm_solver_pp_2m", 20) < 1.05, seed
        assert ratio("dpm_solver_pp_2m", 20, scale=1.1) > 1.05, seed  # CONTROL: the map 10% too large
        assert ratio("dpm_solver_pp_2m", 20, t1=5.0) > 1.05, seed  # CONTROL: the Gaussian's flow used too far

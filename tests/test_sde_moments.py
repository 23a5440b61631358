"""The stochastic samplers reproduce the exact data distribution of a 2-D Gaussian mixture in the
many-step limit (float32, 3000 samples started from the exact noisy marginal at t_0).

Every statistic is a sample mean of some f(x) whose exact expectation is known, checked to
4 standard errors sd(f)/sqrt(n) estimated from the same samples: the mean (f = x), the covariance
(f = (x_j - m_j)(x_k - m_k)), and through the exact posterior responsibilities r_k(x), for which
E_p[r_k f] = w_k E_{N_k}[f] holds exactly (no assignment bias), the mixture weights (f = r_k) and
each component's mean and covariance (f = r_k x, r_k (x - mu_k)(x - mu_k)^T). With the
discretisation bias far below these tolerances (enough steps), a failure is a 4-sigma event per
statistic.

The same statistics are checked at the trajectory's point nearest log-SNR -1, against the exact
noisy marginal there. Control: every sampler with a 10% error in its noise VARIANCE (each step's
noise scale times sqrt(1.1)) fails. With the exact model the reverse process pulls such an error
back towards the data's law, so that at the end it moves the covariances by only 1-3% (measured
with 10^5 samples), which these checks do not resolve; in the middle of the trajectory it is
8-15% of the marginal's covariance (0.3-4% discretisation bias): the controls fail there by 5.8-8.4
standard errors with 12288 samples, the exact samplers pass within 3.1. The final law is checked on the first 3000 of them, as before: with all 12288 the
checks would resolve the small biases of some of these many-step runs (DDPM on vp_discrete: its
component covariances, ~3 standard errors at 12288 samples with 250 or 500 steps).
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.sde.ancestral import ddim_eta, ddpm
from samplers.sde.euler_maruyama import euler_maruyama
from samplers.sde.sde_dpm import sde_dpm_solver
from tests.mcmc_utils import noisy

GMM = GaussianMixture([0.5, 0.3, 0.2], [[-2.0, 0.0], [2.0, 1.0], [0.5, -2.5]],
                      [[[0.3, 0.1], [0.1, 0.2]], [[0.2, -0.05], [-0.05, 0.4]], [[0.25, 0.0], [0.0, 0.15]]])
NUM_SAMPLES = 3000
CHECKED_SAMPLES = 12288  # at the checkpoint: a 10% noise-variance error is 5.8-8.4 standard errors
CHECKPOINT_LAMBDA = -1.0
Z = 4.0


def run_from_marginal(smp, schedule, grid, seed: int = 0, n: int = NUM_SAMPLES, trajectory=False):
    """Final state of ``smp`` started at x_0 ~ p_{t_0} = alpha_0 GMM + sigma_0 N(0, I) (float32)
    (and its trajectory, as ``sample``'s ``trajectory``)."""
    k_data, k_noise, k_run = jax.random.split(jax.random.PRNGKey(seed), 3)
    x0 = GMM.sample(k_data, n)
    x = grid.alpha[0] * x0 + grid.sigma[0] * jax.random.normal(k_noise, x0.shape)
    return jax.jit(sample, static_argnums=(0, 1, 4))(smp, GMM.model_fn(schedule, "eps"), x.astype(jnp.float32),
                                                     k_run, trajectory)


def assert_matches_mixture(x, gmm: GaussianMixture = GMM, z: float = Z):
    """Mean, covariance, mixture weights and per-component moments of samples ``x`` within ``z``
    standard errors of their exact values."""
    x = np.asarray(x, np.float64)
    n = len(x)
    with jax.enable_x64(True):
        logits, _, _ = gmm._components(jnp.asarray(x), 1.0, 0.0)
        r = np.asarray(jax.nn.softmax(logits, axis=-1))  # (n, K)
    dev = x - x.mean(0)
    comp_dev = x[:, None, :] - gmm.means[None]  # (n, K, d)
    stats = {  # name: (per-sample values f(x), exact expectation)
        "mean": (x, gmm.mean),
        "covariance": (dev[:, :, None] * dev[:, None, :] * n / (n - 1), gmm.cov),
        "weights": (r, gmm.weights),
        "component means": (r[:, :, None] * x[:, None, :], gmm.weights[:, None] * gmm.means),
        "component covariances": (r[:, :, None, None] * comp_dev[..., :, None] * comp_dev[..., None, :],
                                  gmm.weights[:, None, None] * gmm.covs),
    }
    for name, (f, exact) in stats.items():
        est, se = f.mean(0), f.std(0) / np.sqrt(n)
        err = np.abs(est - exact) / se
        assert np.all(err <= z), f"{name}: {est.ravel()} vs exact {exact.ravel()} ({err.max():.1f} standard errors)"


CASES = {
    "euler_maruyama_vp": ("vp_linear", dict(num_steps=400, spacing="uniform"), euler_maruyama, {}),
    "euler_maruyama_ve_tweedie": ("ve", dict(num_steps=300, spacing="logsnr", final="zero"), euler_maruyama, {}),
    "ddpm_small": ("vp_discrete", dict(num_steps=250, spacing="linspace"), ddpm, {}),
    "ddpm_large": ("vp_cosine", dict(num_steps=250, spacing="logsnr", final="zero"), ddpm, dict(variance="large")),
    "ddim_eta_0.5": ("vp_linear", dict(num_steps=250, spacing="logsnr", final="zero"), ddim_eta, dict(eta=0.5)),
    "sde_dpm_solver_pp_2m": ("vp_linear", dict(num_steps=200, spacing="logsnr", final="zero"), sde_dpm_solver, {}),
    "sde_dpm_solver_1": ("vp_cosine", dict(num_steps=250, spacing="logsnr", final="zero"), sde_dpm_solver,
                         dict(order=1, algorithm="dpmsolver")),
}


def _noise_variance_times(monkeypatch, build, factor: float):
    """Make ``build`` (a builder on the ``linear_multistep`` engine) scale every step's noise
    variance by ``factor``: the wrong sampler of the control."""
    module = sys.modules[build.__module__]
    engine = module.linear_multistep
    monkeypatch.setattr(module, "linear_multistep", lambda *args, noise=None, **kwargs: engine(
        *args, noise=None if noise is None else np.sqrt(factor) * noise, **kwargs))


@pytest.mark.parametrize("noise_variance", [1.0, 1.1], ids=["exact", "control_variance_x1.1"])
@pytest.mark.parametrize("name", list(CASES))
def test_samples_match_mixture(name, noise_variance, monkeypatch):
    sch_name, grid_kw, build, options = CASES[name]
    sch = schedules.get_schedule(sch_name)
    grid = time_grid(sch, **grid_kw)
    if noise_variance != 1.0:
        _noise_variance_times(monkeypatch, build, noise_variance)
    smp = build(sch, grid, "eps", **options)
    out, xs = run_from_marginal(smp, sch, grid, n=CHECKED_SAMPLES, trajectory=lambda s: s.x)
    assert int(out.nfe) == smp.nfe
    assert out.x.dtype == jnp.float32
    j = int(np.argmin(np.abs(grid.lam[1:] - CHECKPOINT_LAMBDA)))  # xs[j] is x at grid point j + 1

    def check():
        assert_matches_mixture(xs[j], noisy(GMM, grid.alpha[j + 1], grid.sigma[j + 1]))
        assert_matches_mixture(out.x[:NUM_SAMPLES])

    if noise_variance == 1.0:
        check()
    else:
        with pytest.raises(AssertionError):
            check()

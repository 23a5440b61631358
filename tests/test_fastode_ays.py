"""Align Your Steps (samplers/grids.py tables, samplers/ode/ays.py): the published tables and their
log-linear interpolation, the Gaussian closed form, and the KLUB coordinate descent, which finds the
bound's exact optimum for Gaussian data (computed here by quadrature and Nelder-Mead).

On EDM, one early-stopped KLUB sweep from the Karras grid beats Euler's default grid (asserted, with
the converged search as the control). Measured, not asserted (README section): on vp_discrete neither the
KLUB-optimised grid nor the closed form beats diffusers' linspace grid for DDIM on the benchmark mixtures (dim 8, 10 calls: KLUB 0.30 / closed form
0.17 / linspace 0.20 on seed 0, 0.70 / 0.38 / 0.34 on seed 1)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad
from scipy.optimize import minimize

from models.analytic import GaussianMixture, random_mixture
from samplers import registry
from samplers.accuracy import Reference, rms
from samplers.core import sample
from samplers.grids import AYS_SIGMAS, loglinear_interp, sigma_range, time_grid
from samplers.ode import ays, learnt_grid
from samplers.ode.ddim import ddim
from samplers.schedules import ddpm_betas, edm, vp_discrete

SD = vp_discrete(ddpm_betas(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"))  # SD1.x/SDXL
DDPM = vp_discrete(ddpm_betas())


def test_tables_and_log_linear_interpolation():
    table = np.asarray(AYS_SIGMAS["ays_sd15"])
    np.testing.assert_allclose(loglinear_interp(table, 11), table, rtol=1e-12)
    # 4 steps: log sigma halfway between the table's 3rd/4th and 8th/9th entries, its 6th in the middle
    want = [14.615, np.sqrt(3.861 * 2.697), 1.396, np.sqrt(0.652 * 0.399), 0.029]
    np.testing.assert_allclose(loglinear_interp(table, 5), want, rtol=1e-12)
    lin = np.interp(np.linspace(0, 1, 5), np.linspace(0, 1, 11), table[::-1])[::-1]  # CONTROL: linear in sigma
    assert not np.allclose(lin, want, rtol=1e-3)
    # as a named spacing on SD's schedule: the table's model times, then sigma = 0 (ComfyUI's convention)
    # (its end points clipped to the schedule's range: SD's sigma_max is 14.6146, the table's 14.615)
    g = time_grid(SD, 10, "ays_sd15", final="zero")
    np.testing.assert_allclose(g.sigma[1:-1] / g.alpha[1:-1], table[1:-1], rtol=1e-6)
    assert g.t[0] == SD.t_max and g.sigma[-1] == 0.0 and g.num_steps == 10
    xl = time_grid(SD, 10, "ays_sdxl")
    np.testing.assert_allclose(xl.sigma / xl.alpha, AYS_SIGMAS["ays_sdxl"], rtol=1e-2)
    with pytest.raises(ValueError, match="spacing"):  # SVD's sigma 0.002 is below DDPM's 0.01
        time_grid(DDPM, 10, "ays_svd")
    with pytest.raises(ValueError, match="t_start"):
        time_grid(SD, 10, "ays_sd15", t_start=500.0)


def test_gaussian_closed_form():
    c, lo, hi = 0.5, 0.01, 80.0
    sig = ays.gaussian_sigmas(6, c, lo, hi)
    assert sig[0] == pytest.approx(hi) and sig[-1] == pytest.approx(lo)
    np.testing.assert_allclose(np.diff(np.arctan(sig / c)), (np.arctan(lo / c) - np.arctan(hi / c)) / 5, rtol=1e-12)
    # hand-computed middle point of 2 steps: c tan((atan(lo/c) + atan(hi/c)) / 2)
    assert ays.gaussian_sigmas(3, c, lo, hi)[1] == pytest.approx(0.5 * np.tan(0.5 * (np.arctan(0.02) + np.arctan(160))))
    g = ays.gaussian_grid(DDPM, 5, c)
    assert g.num_steps == 5 and g.sigma[-1] == 0.0
    with pytest.raises(ValueError, match="sigma_max"):
        ays.gaussian_sigmas(5, c, 2.0, 1.0)


C_STD, DIM, N = 0.5, 2, 5
GAUSS = GaussianMixture([1.0], np.zeros((1, DIM)), np.full((1, DIM), C_STD**2))


def _exact_klub(sig):
    """The KLUB of N(0, c^2 I) in closed form under the integral: E||D(y_s) - D(y_i)||^2 = d c^4 (1/(c^2+s^2) -
    1/(c^2+s_i^2)) on one forward path, integrated against ds / s^3 by quadrature."""
    f = lambda s, si: DIM * C_STD**4 * (1 / (C_STD**2 + s * s) - 1 / (C_STD**2 + si * si)) / s**3
    return sum(quad(f, sig[i + 1], sig[i], args=(sig[i],), limit=200)[0] for i in range(len(sig) - 1))


def test_optimiser_finds_the_gaussian_klub_optimum(x64, tmp_path):
    lo, hi = sigma_range(DDPM)
    x0 = np.asarray(GAUSS.sample(jax.random.PRNGKey(3), 512, jnp.float64))
    art = ays.optimise_grid(DDPM, GAUSS.model_fn(DDPM, "eps"), x0, N, candidates=16, sweeps=10)
    ours = np.append(np.exp(-DDPM.lambda_(art["t"])), lo)

    def grid(u):  # N + 1 decreasing sigmas from hi to lo, log-increments softmax([u, 0])
        w = np.exp(np.append(u, 0.0))
        return np.exp(np.log(hi) + (np.log(lo) - np.log(hi)) * np.concatenate([[0.0], np.cumsum(w / w.sum())]))

    best = grid(minimize(lambda u: _exact_klub(grid(u)), np.zeros(N - 1), method="Nelder-Mead",
                         options={"maxfev": 4000, "xatol": 1e-7, "fatol": 1e-10}).x)
    close = lambda sig: np.max(np.abs(np.log(sig) - np.log(best))) < 0.1  # measured 0.05 (Monte Carlo noise)
    assert close(ours), (ours, best)
    assert _exact_klub(ours) < 1.01 * _exact_klub(best) and art["klub"] < art["klub_init"]
    closed = ays.gaussian_sigmas(N + 1, C_STD, lo, hi)
    assert not close(closed)  # CONTROL: the paper's closed form is not this bound's optimum (KLUB 257 vs 11)
    # the artefact: saved and loaded with learnt_grid's orbax helpers, DDIM on its grid, N calls
    learnt_grid.save_grid(str(tmp_path / "ays"), art)
    loaded = learnt_grid.load_grid(str(tmp_path / "ays"))
    np.testing.assert_array_equal(loaded["t"], art["t"])
    out = sample(learnt_grid.learnt_grid_sampler(DDPM, loaded), GAUSS.model_fn(DDPM, "eps"), jnp.asarray(x0[:4]))
    assert int(out.nfe) == N and bool(jnp.all(jnp.isfinite(out.x)))


def test_bad_input():
    mf = GAUSS.model_fn(DDPM, "eps")
    with pytest.raises(ValueError, match="x0"):
        ays.klub_estimator(DDPM, mf, np.zeros(3))
    with pytest.raises(ValueError, match="base"):
        ays.optimise_grid(DDPM, mf, np.zeros((4, 2)), 5, base="euler")
    with pytest.raises(ValueError, match="init_sigmas"):
        ays.optimise_grid(DDPM, mf, np.zeros((4, 2)), 5, init_sigmas=[100.0, 1.0])
    with pytest.raises(ValueError, match="nfe"):
        ays.optimise_grid(DDPM, mf, np.zeros((4, 2)), 0)
    with pytest.raises(ValueError, match="init_spacing"):  # diffusers' linspace ends with its own step to 0
        ays.optimise_grid(DDPM, mf, np.zeros((4, 2)), 5, init_spacing="linspace")


EDM = edm()
TUNED, OTHER = random_mixture(dim=8, num_components=4, seed=4), random_mixture(dim=8, num_components=4, seed=2)


def _euler_rms(gmm, *grids):
    """RMS of Euler (DDIM: alpha = 1 on EDM) on each of ``grids`` (all from sigma_max) against the exact
    PF-ODE, 256 fixed draws, one reference solve."""
    ref = Reference(gmm.denoise, np.asarray(jax.random.normal(jax.random.PRNGKey(7), (256, 8), jnp.float64)))
    a0, s0 = float(grids[0].alpha[0]), float(grids[0].sigma[0])
    return [rms(sample(ddim(EDM, grid), gmm.model_fn(EDM, "eps"), jnp.asarray(ref.start(a0, s0))).x,
                ref(a0, s0, 1.0, 0.0)) for grid in grids]


def test_one_sweep_from_karras_beats_euler_default_on_edm(x64):
    """AYS as its paper uses it (an EDM model, the search started from EDM's Karras grid, stopped early):
    one coordinate-descent sweep of the KLUB from the Karras grid of N + 1 points beats Euler on the
    registry's default grid (the same Karras points, ending at sigma_min) at 10 calls on the mixture it
    was tuned on and is no worse on another. The protocol (one sweep from Karras) was chosen on 8-d mixtures
    of seeds 0 and 1 and a 32-d one; these (8-d seeds 4, 2) were not seen. Measured ratios to the default: 0.894 tuned, 0.944 on
    the other mixture. CONTROL: the bound optimised to convergence (10 sweeps) fails the same check
    (measured 1.62)."""
    x0 = np.asarray(TUNED.sample(jax.random.PRNGKey(3), 1024, jnp.float64))
    fit = lambda sweeps: time_grid(EDM, timesteps=np.asarray(ays.optimise_grid(
        EDM, TUNED.model_fn(EDM, "eps"), x0, 10, init_spacing="karras", sweeps=sweeps)["t"]), final="zero")
    base = registry.plan("euler", EDM, 10)[0]  # the registry's default: Karras from sigma_max to sigma_min
    one, converged = fit(1), fit(10)
    tuned_base, tuned_one, tuned_converged = _euler_rms(TUNED, base, one, converged)
    other_base, other_one = _euler_rms(OTHER, base, one)
    assert tuned_one / tuned_base < 0.95 and other_one / other_base <= 1.0
    assert tuned_converged / tuned_base >= 0.95  # CONTROL
    with pytest.raises(ValueError, match="init_spacing"):
        ays.optimise_grid(EDM, TUNED.model_fn(EDM, "eps"), x0, 10, init_spacing="karras", init_sigmas=np.ones(11))

"""Training-free add-ons (samplers/addons): zero strength is the base solver bit for bit, guidance is
exact on a Gaussian mixture, each add-on moves the mixture metrics the way its paper states (each
with a control that fails the same check), stacking compiles once, bad inputs are ValueErrors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import registry
from samplers.addons.boost import boost, skip_steps
from samplers.addons.cads import cads
from samplers.addons.core import with_addons
from samplers.addons.detect import drop_flagged, keep_mask, trajectory_variance, x0_variance
from samplers.addons.grids import beta_grid
from samplers.addons.guidance import classifier_guidance, energy_guidance, epsilon_scaling
from samplers.addons.higs import higs
from samplers.addons.minority import self_guided_minority
from samplers.core import sample
from samplers.param import classifier_free_guidance
from samplers.schedules import vp_linear

SCH = vp_linear()
GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.05, 0.05], [0.1, 0.05]])
X = jax.random.normal(jax.random.PRNGKey(1), (2000, 2))


def _log_resp(gm, k):
    """log p(component k | x_t) of ``gm``: the exact classifier of the mixture."""
    one = GaussianMixture([1.0], gm.means[k:k + 1], gm.covs[k:k + 1])
    return lambda x, t: (one.log_prob_t(x, SCH.alpha(t), SCH.sigma(t)) + np.log(gm.weights[k])
                         - gm.log_prob_t(x, SCH.alpha(t), SCH.sigma(t)))


def test_zero_strength_is_the_base_solver_bit_for_bit():
    fn = GM.model_fn(SCH, "eps")
    zero = [classifier_guidance(_log_resp(GM, 0), 0.0, SCH), epsilon_scaling(SCH, scale=1.0),
            higs(SCH, strength=0.0), boost(1.0), self_guided_minority(SCH, strength=0.0), x0_variance(SCH)]
    for name in ("unipc", "ddpm"):
        base = registry.build(name, SCH, 6)
        ref = sample(base, fn, X[:64], jax.random.PRNGKey(2)).x
        out = sample(with_addons(base, *zero), fn, X[:64], jax.random.PRNGKey(2))
        assert jnp.array_equal(out.x, ref), name
        grid = registry.grid(name, SCH, 6)
        assert skip_steps(grid, 0) is grid
    # CADS without annealing (tau1 >= 1) is plain CFG
    cond_fn = lambda x, t, c: GM.model_fn(SCH)(x, t) * c[:, :1]
    base = registry.build("unipc", SCH, 6)
    cfg = classifier_free_guidance(cond_fn, 3.0, jnp.ones((64, 1)), jnp.zeros((64, 1)))
    ref = sample(base, cfg, X[:64]).x
    out = sample(with_addons(base, cads(SCH, jnp.ones(1), jnp.zeros(1), 3.0, tau1=1.0, tau2=1.5)), cond_fn, X[:64])
    assert jnp.array_equal(out.x, ref)


def test_classifier_and_energy_guidance_are_exact_on_a_mixture():
    """Guidance by the exact classifier log p(k | x_t) at scale 1 is component k's model; energy guidance
    by E_t = -log sum_k r_k c_k is the mixture reweighted by c (CEP). Control: scale 0.9 is rejected."""
    x, t = X[:256] * 1.5, jnp.asarray(0.3)
    comp = GaussianMixture([1.0], GM.means[:1], GM.covs[:1]).model_fn(SCH, "eps")(x, t)
    c = np.array([4.0, 0.5])
    rew = GaussianMixture(GM.weights * c, GM.means, GM.covs).model_fn(SCH, "x0")(x, t)
    log_r = [_log_resp(GM, k) for k in range(2)]
    energy = lambda x, t: -jax.nn.logsumexp(jnp.stack([f(x, t) for f in log_r], -1) + jnp.log(c), -1)
    base_eps, base_x0 = GM.model_fn(SCH, "eps"), GM.model_fn(SCH, "x0")
    for scale, ok in ((1.0, True), (0.9, False)):
        g = classifier_guidance(log_r[0], scale, SCH, "eps").wrap((), None, base_eps)(x, t)
        e = energy_guidance(energy, scale, SCH, "x0").wrap((), None, base_x0)(x, t)
        assert (float(jnp.max(jnp.abs(g - comp))) < 1e-4) == ok
        assert (float(jnp.max(jnp.abs(e - rew))) < 1e-4) == ok


def _drift(lam):
    """Exposure-bias drift of DDIM (10 calls): |E|x_N|^2 / E_q|x_N|^2 - 1| at the grid's last point."""
    gm = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [2.0, 1.0]], [[0.1, 0.1], [0.2, 0.1]])
    g = registry.grid("ddim", SCH, 10)
    second = np.trace(gm.cov) + gm.mean @ gm.mean
    target = g.alpha[1:] ** 2 * second + g.sigma[1:] ** 2 * 2
    s = with_addons(registry.build("ddim", SCH, 10), epsilon_scaling(SCH, scale=lam))
    x = sample(s, gm.model_fn(SCH), X).x
    return float(np.abs(np.mean(np.sum(np.asarray(x) ** 2, -1)) / target[-1] - 1))


def test_epsilon_scaling_reduces_exposure_bias_drift():
    base, scaled, control = _drift(1.0), _drift(1.02), _drift(0.98)
    assert scaled < 0.85 * base, (scaled, base)
    assert not control < 0.85 * base, (control, base)


def test_higs_raises_likelihood_at_few_steps():
    """Sadat et al.: HiGS improves few-step quality; on the mixture the exact log-likelihood of DDIM at
    5 calls rises by > 0.2 nats. Control: the opposite sign (pull towards the history) does not."""
    s = registry.build("ddim", SCH, 5)
    ll = lambda a: float(jnp.mean(GM.log_prob(sample(with_addons(s, a), GM.model_fn(SCH), X).x)))
    base = float(jnp.mean(GM.log_prob(sample(s, GM.model_fn(SCH), X).x)))
    assert ll(higs(SCH, strength=0.1)) > base + 0.2
    assert not ll(higs(SCH, strength=-0.1)) > base + 0.2


def test_cads_raises_diversity_at_high_guidance():
    """Class-conditional Gaussians N(c, 0.1^2 I) (NaN label: unconditional) under CFG 6 collapse;
    CADS's annealed condition noise widens the class's spread by > 20%. Control: no condition noise
    (noise_scale 0) does not."""
    means = jnp.array([[2.0, 0.0], [-2.0, 0.0]])
    uncond = GaussianMixture([0.5, 0.5], means, [[0.01, 0.01]] * 2).model_fn(SCH, "x0")

    def cond_fn(x, t, c):
        a, s = SCH.alpha(t), SCH.sigma(t)
        is_cond = ~jnp.isnan(c[:, :1])
        mu = jnp.where(is_cond, c, 0.0)
        return jnp.where(is_cond, mu + a * 0.01 / (a * a * 0.01 + s * s) * (x - a * mu), uncond(x, t))

    s = registry.build("unipc", SCH, 10, "x0")
    y, n = jnp.array([2.0, 0.0]), jnp.full(2, jnp.nan)
    spread = lambda a: float(jnp.mean(jnp.std(sample(with_addons(s, a), cond_fn, X[:1000]).x, 0)))
    base = spread(cads(SCH, y, n, 6.0, tau1=1.0, tau2=1.5))
    assert spread(cads(SCH, y, n, 6.0, noise_scale=1.0)) > 1.2 * base
    assert not spread(cads(SCH, y, n, 6.0, noise_scale=0.0)) > 1.2 * base


def test_boost_and_skip_raises_the_minority_fraction():
    """Kim et al.: a boosted start with skipped first steps raises the smallest component's fraction
    (here 0.1) by > 30%. Control: the same skip from shrunk noise (0.7) does not."""
    gm = GaussianMixture([0.9, 0.1], [[-1.0, 0.0], [2.5, 0.0]], [[0.05, 0.05]] * 2)
    grid = registry.grid("ddim", SCH, 10)
    from samplers.ode.ddim import ddim
    minor = lambda out: float(jnp.mean(out.x[:, 0] > 0.75))
    base = minor(sample(ddim(SCH, grid), gm.model_fn(SCH), X))
    skipped = ddim(SCH, skip_steps(grid, 2))
    assert minor(sample(with_addons(skipped, boost(1.6)), gm.model_fn(SCH), X)) > 1.3 * base
    assert not minor(sample(skipped, gm.model_fn(SCH), 0.7 * X)) > 1.3 * base


def test_self_guided_minority_raises_the_minority_fraction_and_counts_calls():
    """Um & Ye: guidance up the self-reconstruction loss raises the smallest component's fraction (0.1,
    DDIM at 10 solver calls) by > 50%. Control: the opposite sign does not. Two model calls a call."""
    gm = GaussianMixture([0.9, 0.1], [[-1.0, 0.0], [2.5, 0.0]], [[0.05, 0.05]] * 2)
    s = registry.build("ddim", SCH, 10)
    minor = lambda out: float(jnp.mean(out.x[:, 0] > 0.75))
    base = minor(sample(s, gm.model_fn(SCH), X))
    guided = sample(with_addons(s, self_guided_minority(SCH, strength=0.5, t_perturb=0.3)), gm.model_fn(SCH), X)
    assert minor(guided) > 1.5 * base and int(guided.nfe) == 20
    control = sample(with_addons(s, self_guided_minority(SCH, strength=-0.5, t_perturb=0.3)), gm.model_fn(SCH), X)
    assert not minor(control) > 1.5 * base


def test_detector_flags_samples_between_modes():
    """Aithal et al.: x0_hat's variance over the final steps flags samples between the modes of a
    separated mixture: >= 90% of them lie above the 99th percentile of those on a mode. Control: the
    variance over the whole trajectory (u_max = 1) does not separate them."""
    gm = GaussianMixture([0.5, 0.5], [[-3.0], [3.0]], [[0.05], [0.05]])
    x = jax.random.normal(jax.random.PRNGKey(1), (4000, 1))

    def recall(u_max):
        st = sample(with_addons(registry.build("ddim", SCH, 10), x0_variance(SCH, u_max=u_max)), gm.model_fn(SCH), x)
        v, between = np.asarray(trajectory_variance(st)), np.abs(np.asarray(st.x[:, 0])) < 2.0
        assert between.sum() >= 20
        thr = float(np.quantile(v[~between], 0.99))
        assert drop_flagged(st.x, v, thr).shape[0] == keep_mask(v, thr).sum()
        return float(np.mean(~keep_mask(v[between], thr)))

    assert recall(0.1) >= 0.9
    assert not recall(1.0) >= 0.9


def test_three_addons_on_unipc_compile_once_with_exact_nfe():
    traces = []

    def fn(x, t):
        traces.append(1)
        return GM.model_fn(SCH)(x, t)

    s = with_addons(registry.build("unipc", SCH, 8), epsilon_scaling(SCH, scale=1.01),
                    higs(SCH, strength=0.1), x0_variance(SCH))
    run = jax.jit(lambda x, k: sample(s, fn, x, k))
    a, b = run(X[:32], jax.random.PRNGKey(0)), run(X[32:64] * 0.5, jax.random.PRNGKey(1))
    assert len(traces) == 1 and s.nfe == 8 and int(a.nfe) == 8 and int(b.nfe) == 8
    assert not jnp.array_equal(a.x, b.x)


def test_beta_grid():
    g = beta_grid(SCH, 6, 0.6, 0.6)
    assert g.num_steps == 6 and g.t[0] == SCH.t_max and g.t[-1] == SCH.t_min
    d = -np.diff(g.t)
    assert d[0] < d[3] and d[-1] < d[3]  # dense at both ends for a, b < 1
    assert beta_grid(SCH, 4, final="zero").final_zero


@pytest.mark.parametrize("build", [
    lambda: classifier_guidance(lambda x, t: x[:, 0], float("nan"), SCH),
    lambda: epsilon_scaling(SCH, scale=0.0),
    lambda: epsilon_scaling(SCH, scale=1.0, slope=-1.0),
    lambda: higs(SCH, decay=1.0),
    lambda: higs(SCH, u_min=0.5, u_max=0.4),
    lambda: cads(SCH, 1.0, 0.0, 3.0, tau1=0.9, tau2=0.6),
    lambda: cads(SCH, 1.0, 0.0, 3.0, psi=2.0),
    lambda: boost(0.5),
    lambda: skip_steps(registry.grid("ddim", SCH, 5), 5),
    lambda: x0_variance(SCH, u_max=0.0),
    lambda: self_guided_minority(SCH, t_perturb=2.0),
    lambda: beta_grid(SCH, 5, a=0.0),
    lambda: with_addons(registry.build("ddim", SCH, 5), higs(SCH), cads(SCH, 1.0, 0.0, 3.0)),  # CADS not first
    lambda: with_addons(registry.build("ddim", SCH, 5), lambda fn: fn),
    lambda: with_addons(registry.build("ddim", SCH, 5), higs(SCH), self_guided_minority(SCH)),  # leaks the history
])
def test_bad_inputs_are_value_errors(build):
    with pytest.raises(ValueError):
        build()

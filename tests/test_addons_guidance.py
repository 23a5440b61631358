"""Upsample guidance, density guidance and classifier-based minority guidance (samplers/addons): zero
strength is the base solver bit for bit; each moves the result the way its paper states on a Gaussian
mixture, with margin, and the opposite sign fails the same check; bad inputs are ValueErrors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture, random_mixture
from samplers import registry
from samplers.addons.core import with_addons
from samplers.addons.density import density_guidance
from samplers.addons.minority import minority_guidance
from samplers.addons.upsample import pool, unpool, upsample_guidance
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.schedules import flow, vp_linear

SCH = vp_linear()
PIXEL = GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[0.05], [0.05]])
IMAGES = jax.random.normal(jax.random.PRNGKey(1), (2000, 2, 2, 1))
GM3 = GaussianMixture([0.6, 0.3, 0.1], [[-2.0, 0.0], [2.0, 1.0], [0.5, -2.5]],
                      [[0.1, 0.05], [0.05, 0.1], [0.05, 0.05]])
X = jax.random.normal(jax.random.PRNGKey(1), (2000, 2))


def pixel_model(x, t):
    """A model of single pixels applied to every pixel (a 1x1 'CNN'): trained at 1x1, it samples 2x2
    images whose pixels are independent, so their 2x2 means are not from the pixel mixture."""
    return PIXEL.model_fn(SCH)(x.reshape(-1, 1), t).reshape(x.shape)


def component_logits(x, t):
    """The exact classifier of the mixture's component, ordered common -> rare (level 2 = weight 0.1)."""
    a, s = SCH.alpha(t), SCH.sigma(t)
    return jnp.stack([np.log(w) + GaussianMixture([1.0], GM3.means[k:k + 1], GM3.covs[k:k + 1]).log_prob_t(x, a, s)
                      for k, w in enumerate(GM3.weights)], -1)


def test_zero_strength_is_the_base_solver_bit_for_bit():
    """UniPC (deterministic) with upsample and density guidance at 0, DDPM (stochastic) with minority
    guidance at 0."""
    base = registry.build("unipc", SCH, 6)
    ref = sample(base, pixel_model, IMAGES[:64]).x
    out = sample(with_addons(base, upsample_guidance(SCH, 0.0), density_guidance(SCH, 0.0)), pixel_model, IMAGES[:64])
    assert jnp.array_equal(out.x, ref)
    base = registry.build("ddpm", SCH, 6)
    ref = sample(base, GM3.model_fn(SCH), X[:64], jax.random.PRNGKey(2)).x
    out = sample(with_addons(base, minority_guidance(component_logits, 0.0, SCH)), GM3.model_fn(SCH), X[:64],
                 jax.random.PRNGKey(2))
    assert jnp.array_equal(out.x, ref)


def test_upsample_guidance_gives_the_pooled_image_the_low_resolution_distribution():
    """Hwang et al.: the pooled 2x2 -> 1x1 image follows the trained (pixel) distribution: its mean
    log-likelihood under the pixel mixture (about -0.6 for exact samples) rises from -19.6 (unguided
    DDIM, 10 calls) by > 10 nats at strength 1 (measured -1.2). Control: strength -1 does not. Two model
    calls per solver call."""
    s = registry.build("ddim", SCH, 10)
    ll = lambda out: float(jnp.mean(PIXEL.log_prob(pool(out.x, 2).reshape(-1, 1))))
    base = ll(sample(s, pixel_model, IMAGES))
    guided = sample(with_addons(s, upsample_guidance(SCH, 1.0)), pixel_model, IMAGES)
    assert ll(guided) > base + 10 and int(guided.nfe) == 20, (ll(guided), base)
    assert not ll(sample(with_addons(s, upsample_guidance(SCH, -1.0)), pixel_model, IMAGES)) > base + 10
    x = IMAGES[:4]
    assert jnp.array_equal(pool(unpool(x, 2), 2), x)


def test_upsample_guided_ddim_pools_to_a_low_resolution_ddim_run():
    """At strength 1 the DDIM update commutes with pooling: the pooled guided trajectory, scaled by
    alpha_tau / alpha_t, is DDIM at the low resolution on the grid tau_i with lambda(tau_i) = lambda(t_i) +
    log 2 (grid ending at t = 0.01, so no tau is clipped), to < 1e-4 (measured 1.8e-5). Control: strength
    0.9 is rejected."""
    grid = time_grid(SCH, 10, t_end=0.01)
    low = time_grid(SCH, timesteps=SCH.t_from_lambda(grid.lam + np.log(2.0)))
    x = IMAGES[:256]
    ref = sample(ddim(SCH, low), pixel_model, low.alpha[0] / grid.alpha[0] * pool(x, 2)).x
    for w, ok in ((1.0, True), (0.9, False)):
        hi = sample(with_addons(ddim(SCH, grid), upsample_guidance(SCH, w)), pixel_model, x).x
        err = float(jnp.max(jnp.abs(low.alpha[-1] / grid.alpha[-1] * pool(hi, 2) - ref)))
        assert (err < 1e-4) == ok, (w, err)


def test_density_guidance_sets_the_log_density_offset_of_a_flow():
    """Karczewski et al.: an exact log-density offset. On a 16-D mixture under the rectified-flow schedule
    (UniPC, 20 calls, t from 0.995 to 1e-3), log p of each guided sample minus that of the unguided one
    from the same noise is delta = -2 (lower density, more detail) within 10% on average and within 25%
    for >= 90% of samples (measured -1.95, 94%); delta = +2 likewise. Control: the check for -2 applied
    to the +2 run fails."""
    gm, sch = random_mixture(16, 3, seed=0), flow()
    x = jax.random.normal(jax.random.PRNGKey(1), (1000, 16))
    kw = dict(t_start=0.995, t_end=1e-3)
    s = registry.build("unipc", sch, 20, **kw)
    log_p = lambda x: np.asarray(gm.log_prob_t(x, sch.alpha(jnp.asarray(1e-3)), sch.sigma(jnp.asarray(1e-3))))
    base = log_p(sample(s, gm.model_fn(sch), x).x)
    offset = {d: log_p(sample(with_addons(s, density_guidance(sch, d, **kw)), gm.model_fn(sch), x).x) - base
              for d in (-2.0, 2.0)}
    hits = lambda diff, d: abs(diff.mean() - d) < 0.1 * abs(d) and np.mean(np.abs(diff - d) < 0.25 * abs(d)) >= 0.9
    assert hits(offset[-2.0], -2.0) and hits(offset[2.0], 2.0), {d: float(v.mean()) for d, v in offset.items()}
    assert not hits(offset[2.0], -2.0)


def test_minority_guidance_raises_the_smallest_component():
    """Um et al.: guidance by the minority-level classifier towards the rarest level raises the fraction
    of the smallest component (0.1; DDIM 10 calls: 0.08) above twice the base at scale 0.5. Control: scale
    -0.5 (towards the majority) does not."""
    s = registry.build("ddim", SCH, 10)
    frac = lambda x: float(jnp.mean(jnp.argmax(component_logits(x, jnp.asarray(SCH.t_min)), -1) == 2))
    base = frac(sample(s, GM3.model_fn(SCH), X).x)
    run = lambda w: frac(sample(with_addons(s, minority_guidance(component_logits, w, SCH)), GM3.model_fn(SCH), X).x)
    assert run(0.5) > 2 * base, (run(0.5), base)
    assert not run(-0.5) > 2 * base


@pytest.mark.parametrize("build", [
    lambda: upsample_guidance(SCH, float("inf")),
    lambda: upsample_guidance(SCH, 1.0, factor=1),
    lambda: upsample_guidance(SCH, 1.0, factor=2.0),
    lambda: upsample_guidance(SCH, 1.0, eta=0.0),
    lambda: upsample_guidance(SCH, 1.0, eta=1.5),
    lambda: density_guidance(SCH, float("nan")),
    lambda: density_guidance(flow(), 1.0),  # log-SNR infinite at t_start = 1
    lambda: density_guidance(SCH, 1.0, t_start=0.1, t_end=0.5),
    lambda: minority_guidance(component_logits, 1.0, SCH, target=1.5),
    lambda: minority_guidance(component_logits, "1", SCH),
])
def test_bad_inputs_are_value_errors(build):
    with pytest.raises(ValueError):
        build()

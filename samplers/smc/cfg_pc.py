"""Classifier-free guidance as predictor-corrector (Bradley & Nakkiran 2024, "Classifier-Free
Guidance is a Predictor-Corrector").

CFG with guidance g does not sample the "gamma-powered" target p(x|c)^g p(x)^(1-g), neither
as CFG-DDIM nor as CFG-DDPM (their Gaussian counterexamples). The predictor-corrector reading
does, at each noise level t:

* predictor: one DDIM step of the conditional model p_t(x|c) from t_i to t_{i+1};
* corrector: K unadjusted Langevin steps on p_{t_{i+1}}(x|c)^g p_{t_{i+1}}(x)^(1-g), whose score
  is the CFG combination g s_c + (1-g) s_u of the two model outputs (``param.
  classifier_free_guidance`` followed by the conversion to a score):

      x <- x + h s(x) + sqrt(2 h) z,   h = tau (alpha_t^2 + sigma_t^2)

  (tau = ``step_size``; alpha^2 + sigma^2 is the scale of x_t for data of unit variance).

At the last level the samples follow the CFG target of p_{t_N}, which is p_0's as sigma -> 0.
``model_fn(x, t, c)`` takes the conditioning per example (as ``classifier_free_guidance``);
``cond`` and ``uncond`` are one example's labels, broadcast over the batch. NFE counts the
conditional and the unconditional evaluations separately: 1 + 2K per step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, basic_init, take_rows
from samplers.grids import TimeGrid
from samplers.ode.common import check_grid
from samplers.ode.ddim import ddim_coefficients
from samplers.param import as_prediction, check_prediction, classifier_free_guidance, convert
from samplers.schedules import Schedule


def cfg_pc(schedule: Schedule, grid: TimeGrid, guidance: float, cond, uncond, predicts: str = "eps",
           corrector_steps: int = 1, step_size: float = 0.1) -> Sampler:
    """CFG-PC sampler: DDIM predictor on p(x|c), ``corrector_steps`` Langevin steps on
    p(x|c)^guidance p(x)^(1-guidance) after each predictor step onto sigma > 0."""
    check_grid(grid)
    check_prediction(predicts)
    if not np.isscalar(guidance) or not np.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, (int, np.integer)) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an integer >= 0, got {corrector_steps!r}")
    if not np.isscalar(step_size) or not np.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a finite number > 0, got {step_size!r}")
    k, n = int(corrector_steps), grid.num_steps
    a, b = ddim_coefficients(grid)
    t_next, active = grid.t[1:], (grid.sigma[1:] > 0).astype(np.float64)
    h = step_size * (grid.alpha[1:] ** 2 + grid.sigma[1:] ** 2) * active
    t_model = grid.t[:-1]

    def labels(x, c):
        c = jnp.asarray(c)
        return jnp.broadcast_to(c, (x.shape[0],) + c.shape)

    def step(state: BasicState, key, model_fn):
        x, dt = state.x, state.x.dtype
        ai, bi, ti, tn, hi, on = take_rows(state.i, dt, a, b, t_model, t_next, h, active)
        cond_fn = lambda y, t: model_fn(y, t, labels(y, cond))
        x = ai * x + bi * as_prediction(cond_fn, schedule, predicts, "x0")(x, ti)
        guided = classifier_free_guidance(model_fn, guidance, labels(x, cond), labels(x, uncond))

        def langevin(x, kk):
            score = convert(guided(x, tn), x, tn, schedule, predicts, "score")
            return x + hi * score + jnp.sqrt(2.0 * hi) * jax.random.normal(kk, x.shape, dt), None

        if k:
            x, _ = jax.lax.scan(langevin, x, jax.random.split(key, k))
        return BasicState(x=x, i=state.i + 1, nfe=state.nfe + 1 + (2 * k * on).astype(jnp.int32))

    return Sampler(init=basic_init, step=step, num_steps=n, nfe=int(n + 2 * k * active.sum()))

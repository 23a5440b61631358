"""Chain of log-concave Markov chains (Saremi, Park & Bach 2023): sequential multi-measurement sampling.

Noisy measurements y_k = x + sigma eps_k (k = 1..m) of x ~ p are sampled one at a
time from p(y_k | y_1..y_{k-1}), which is log-concave for sigma large enough
(their Thm. 1). Its score only needs the denoiser at the running mean
ybar_k = (y_1 + ... + y_k) / k, a noisy copy of x at noise sigma / sqrt(k):

    grad_{y_k} log p(y_1..y_k) = (E[x | ybar_k] - y_k) / sigma^2.

"Walk": ``steps_per_measurement`` unadjusted Langevin steps on y_k of size
h = ``step_scale`` sigma^2 (the conditional's covariance is >= sigma^2 I).
"Jump": x = E[x | ybar_k] once walk k is done; it also starts walk k + 1 at
y_{k+1} = E[x | ybar_k] + sigma z (exact when Cov(x | ybar_k) is negligible, and
free of the correlation a walker continued from y_k would carry). The last jump,
E[x | ybar_m], is the sample. The
denoiser at noise s is the model's x0 prediction at the schedule time t with
sigma_t / alpha_t = s, called on alpha_t ybar. One model call a step.

State: ``x`` is the latest denoiser output E[x | ybar] (the sample after the last step),
``y`` the walker y_k, ``ysum`` the sum of the finished measurements.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from samplers.core import Sampler, take
from samplers.checks import check_int, check_positive
from samplers.mcmc.common import as_model, check_model_output
from samplers.mcmc.langevin import langevin_proposal
from samplers.schedules import Schedule


@struct.dataclass
class ChainState:
    x: jax.Array
    i: jax.Array
    nfe: jax.Array
    y: jax.Array
    ysum: jax.Array


def noise_level_times(schedule: Schedule, s: np.ndarray) -> np.ndarray:
    """Schedule times t with sigma_t / alpha_t = s (float64), checked to lie in its range."""
    t = np.asarray(schedule.t_from_lambda(-np.log(np.asarray(s, np.float64))), np.float64)
    schedule.check_t(t, "noise levels sigma / sqrt(k)")
    return t


def logconcave_chain(schedule: Schedule, sigma: float, num_measurements: int, steps_per_measurement: int,
                     step_scale: float = 0.1, predicts: str = "eps") -> Sampler:
    """Sequential multi-measurement sampler with ``num_measurements`` (m) walks of
    ``steps_per_measurement`` (T) Langevin steps, each followed by a jump (m (T + 1) model calls).

    ``init(x)`` takes the first walker y_1 (e.g. sigma-scaled noise around the data)."""
    s0 = check_positive("sigma", sigma)
    m = check_int("num_measurements", num_measurements)
    per = check_int("steps_per_measurement", steps_per_measurement)
    r = check_positive("step_scale", step_scale)
    check_model_output(predicts)
    k = np.arange(1, m + 1, dtype=np.float64)
    t_lev = noise_level_times(schedule, s0 / np.sqrt(k))
    # Step kinds: walk k (T steps, ybar = (ysum + y) / k) and jump at level k (ybar = ysum / k),
    # which draws the next walker y_{k+1} = E[x | ybar_k] + sigma z; the last jump gives the sample.
    level, a_tab, b_tab, is_walk, ends_walk = [], [], [], [], []
    for j in range(m):
        if j > 0:  # jump at level j (ysum holds y_1..y_j), starting walk j + 1
            level.append(j - 1), a_tab.append(1.0 / j), b_tab.append(0.0), is_walk.append(False)
            ends_walk.append(False)
        for s in range(per):
            level.append(j), a_tab.append(1.0 / (j + 1)), b_tab.append(1.0 / (j + 1)), is_walk.append(True)
            ends_walk.append(s == per - 1)
    level.append(m - 1), a_tab.append(1.0 / m), b_tab.append(0.0), is_walk.append(False), ends_walk.append(False)
    t_tab = t_lev[np.array(level)]
    alpha_tab = np.asarray(schedule.alpha(t_tab), np.float64)
    a_tab, b_tab = np.array(a_tab), np.array(b_tab)
    is_walk, ends_walk = np.array(is_walk), np.array(ends_walk)
    h = r * s0**2
    n = len(t_tab)

    def init(x, key=None, model_fn=None):
        del key, model_fn
        z = jnp.zeros((), jnp.int32)
        return ChainState(x=x, i=z, nfe=z, y=x, ysum=jnp.zeros_like(x))

    def step(state, key, model_fn):
        i, dt, y = state.i, state.x.dtype, state.y
        t = take(t_tab, i, dt)
        ybar = take(a_tab, i, dt) * state.ysum + take(b_tab, i, dt) * y
        alpha = take(alpha_tab, i, dt)
        xhat = as_model(model_fn, schedule, predicts, "x0")(alpha * ybar, t)
        z = jax.random.normal(key, y.shape, dt)
        y_walk = langevin_proposal(y, (xhat - y) / s0**2, h, z)
        y_new = jnp.where(take(is_walk, i, bool), y_walk, xhat + s0 * z)
        ysum = state.ysum + jnp.where(take(ends_walk, i, bool), y_new, 0.0)
        return ChainState(x=xhat, i=i + 1, nfe=state.nfe + 1, y=y_new, ysum=ysum)

    return Sampler(init=init, step=step, num_steps=n, nfe=n)

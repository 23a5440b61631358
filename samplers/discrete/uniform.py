"""Uniform-noise discrete diffusion (D3PM uniform, Austin et al. 2021; the CTMC view of Campbell et al.
2022 and SEDD, Lou et al. 2024): each token is kept with probability alpha(t), else uniform over V,

    q(x_t = y | x0 = v) = alpha_t [y = v] + (1 - alpha_t) / V,     q(x_t | x_s) the same with alpha_t / alpha_s.

t = 1 is noise, t = 0 data (alpha from samplers/discrete/schedules.py). With x0_hat = softmax(model_fn(y, t))
the exact per-position marginals of x0 given the whole noisy sequence y, and w_v = x0_hat_v / q(y | x0 = v),
S = sum_v w_v (REFERENCES.md, "Discrete diffusion"):

* ``analytic``: the posterior step q(x_s | x_t = y) = sum_v x0_hat_v q(x_s | y, x0 = v)
      p(x_s = x) = (a_{t|s} [x = y] + (1 - a_{t|s}) / V) (alpha_s w_x + (1 - alpha_s) S / V),  a_{t|s} = alpha_t / alpha_s;
  exact at any number of steps when the positions are independent (the last step, alpha_s = 1, draws x0_hat).
* ``euler``: the reverse CTMC rate R(y -> x) = Q(x -> y) q_t(x) / q_t(y) (a jump of one position), with the
  forward rate Q(x -> y) = sigma_t / V, sigma_t = -alpha'_t / alpha_t, and the ratio of marginals
  q_t(x) / q_t(y) = alpha_t w_x + (1 - alpha_t) S / V; x ~ Cat([x = y] + h R(y -> x)), the stay probability
  clamped at 0 (then the jump probabilities are renormalised).
* ``tau_leaping``: Poisson jump counts n_x ~ Poisson(h R(y -> x)) per position with the rates frozen over the
  step; tokens are categorical, so a position ends at its last jump, a uniformly ordered one of the counted
  jumps (x ~ n_x / sum n; no jump: y). Campbell et al.'s ordinal rule (y + sum_x n_x (x - y) clamped to
  [0, V - 1]) is meant for ordered states and is left out: it converged more slowly here (TV 0.038 vs 0.028
  at 32 steps on the test mixture).

The rates are infinite where alpha_t = 0, so ``euler`` / ``tau_leaping`` need alpha(t_0) > 0 (default schedule
log-linear, alpha(1) = 1e-3). ``coef`` (per step, default ones) multiplies the jump probability of the
analytic step (off-diagonal mass) and the rate of the other two; ones reproduce each sampler bit for bit.
``uniform_model_fn`` is the exact denoiser of a ProductMixture (models/discrete.py) under uniform noise.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.core import BasicState, Sampler, take_rows
from samplers.discrete.categorical import categorical, sampling_dtype
from samplers.discrete.masked import check_coef, check_ids, check_times
from samplers.discrete.schedules import get_mask_schedule

def uniform_log_likelihood(y, alpha, vocab_size: int) -> jax.Array:
    """log q(x_t = y | x0 = v) (B, L, V) of observed tokens y (B, L) at keep probability alpha."""
    same = y[..., None] == jnp.arange(vocab_size)
    alpha = jnp.asarray(alpha, jnp.float32)
    return jnp.log(jnp.where(same, alpha, 0.0) + (1.0 - alpha) / vocab_size)


def uniform_model_fn(target, schedule="linear"):
    """Exact x0 logits (B, L, V) of a ProductMixture ``target`` under uniform noise: model_fn(x, t)."""
    schedule = get_mask_schedule(schedule)

    def model_fn(x, t):
        alpha = schedule.alpha(jnp.asarray(t, jnp.float32))
        alpha = jnp.reshape(alpha, jnp.shape(alpha) + (1, 1)) if jnp.ndim(alpha) else alpha
        return target.posterior_x0_logits(uniform_log_likelihood(x, alpha, target.vocab_size))

    return model_fn


def uniform_tokens(key, batch: int, length: int, vocab_size: int) -> jax.Array:
    """The starting point of uniform-noise samplers: (batch, length) uniform token ids."""
    return jax.random.randint(key, (batch, length), 0, vocab_size, jnp.int32)


def weights(logits, y, alpha) -> tuple[jax.Array, jax.Array]:
    """w_v = x0_hat_v / q(y | x0 = v) (B, L, V) and S = sum_v w_v (B, L, 1)."""
    vocab_size = logits.shape[-1]
    w = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) * jnp.exp(-uniform_log_likelihood(y, alpha, vocab_size))
    return w, w.sum(-1, keepdims=True)


def marginal_ratio(logits, y, alpha) -> jax.Array:
    """q_t(y with one position set to x) / q_t(y) = alpha w_x + (1 - alpha) S / V  (B, L, V)."""
    w, s = weights(logits, y, alpha)
    return alpha * w + (1.0 - alpha) * s / logits.shape[-1]


def draw(key, w, dtype) -> jax.Array:
    """A draw from unnormalised non-negative weights w (B, L, V) (zero weight: never)."""
    return categorical(key, jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf), dtype)


def check_uniform_ids(x, vocab_size: int) -> None:
    check_ids(x, vocab_size, -1)  # no mask token: -1 is already rejected as a negative id


def _build(vocab_size, num_steps, schedule, timesteps, coef, dtype, rates: bool):
    if not isinstance(vocab_size, (int, np.integer)) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    schedule = get_mask_schedule(schedule)
    ts = check_times(num_steps, timesteps)
    coef = check_coef(coef, num_steps)
    a_t, a_s = schedule.alpha(ts[:-1]), schedule.alpha(ts[1:])
    if rates and a_t[0] <= 0:
        raise ValueError(f"the reverse rate is infinite where alpha = 0 (schedule {schedule.name!r} at t={ts[0]}): "
                         "use schedule='loglinear' or timesteps starting below 1")
    return schedule, ts, coef, a_t, a_s, sampling_dtype(dtype)


def _sampler(vocab_size, num_steps, ts, tables, move) -> Sampler:
    def init(x, key=None, model_fn=None):
        del key, model_fn
        check_uniform_ids(x, vocab_size)
        return BasicState(x=jnp.asarray(x, jnp.int32), i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((), jnp.int32))

    def step(state, key, model_fn):
        t, *row = take_rows(state.i, jnp.float32, ts[:-1], *tables)
        logits = model_fn(state.x, t)
        return BasicState(x=move(key, state.x, logits, *row), i=state.i + 1, nfe=state.nfe + 1)

    return Sampler(init, step, num_steps, num_steps)


def analytic(vocab_size: int, num_steps: int, schedule="linear", timesteps=None, coef=None, dtype=None) -> Sampler:
    """The exact posterior (ancestral) step of uniform-noise diffusion (module docstring)."""
    schedule, ts, coef, a_t, a_s, dtype = _build(vocab_size, num_steps, schedule, timesteps, coef, dtype, False)
    a_ts = a_t / a_s

    def move(key, y, logits, alpha_t, alpha_s, alpha_ts, c):
        w, s = weights(logits, y, alpha_t)
        same = y[..., None] == jnp.arange(vocab_size)
        p = (jnp.where(same, alpha_ts, 0.0) + (1.0 - alpha_ts) / vocab_size) * (alpha_s * w + (1.0 - alpha_s) * s / vocab_size)
        p = p / p.sum(-1, keepdims=True)
        stay = jnp.sum(jnp.where(same, p, 0.0), -1, keepdims=True)
        p = jnp.where(same, jnp.maximum(stay + (1.0 - c) * (1.0 - stay), 0.0), c * p)  # c = 1: p itself
        return draw(key, p, dtype)

    return _sampler(vocab_size, num_steps, ts, (a_t, a_s, a_ts, coef), move)


def _rate_scale(schedule, ts, coef, a_t, vocab_size):
    """coef_i h_i sigma_{t_i} / V: the factor of the marginal ratio in h R (float64)."""
    sigma = -schedule.dalpha(ts[:-1]) / a_t
    return coef * (ts[:-1] - ts[1:]) * sigma / vocab_size


def euler(vocab_size: int, num_steps: int, schedule="loglinear", timesteps=None, coef=None, dtype=None) -> Sampler:
    """The Euler rate step x ~ Cat(delta_y + h R(y -> .)) of uniform-noise diffusion (module docstring)."""
    schedule, ts, coef, a_t, _, dtype = _build(vocab_size, num_steps, schedule, timesteps, coef, dtype, True)
    scale = _rate_scale(schedule, ts, coef, a_t, vocab_size)

    def move(key, y, logits, alpha, hr):
        same = y[..., None] == jnp.arange(vocab_size)
        jump = jnp.where(same, 0.0, hr * marginal_ratio(logits, y, alpha))
        stay = jnp.maximum(1.0 - jump.sum(-1, keepdims=True), 0.0)
        return draw(key, jnp.where(same, stay, jump), dtype)

    return _sampler(vocab_size, num_steps, ts, (a_t, scale), move)


def tau_leaping(vocab_size: int, num_steps: int, schedule="loglinear", timesteps=None, coef=None, dtype=None) -> Sampler:
    """Tau-leaping with Poisson jump counts per position and target token (module docstring)."""
    schedule, ts, coef, a_t, _, dtype = _build(vocab_size, num_steps, schedule, timesteps, coef, dtype, True)
    scale = _rate_scale(schedule, ts, coef, a_t, vocab_size)
    vocab = jnp.arange(vocab_size)

    def move(key, y, logits, alpha, hr):
        k_count, k_last = jax.random.split(key)
        same = y[..., None] == vocab
        counts = jax.random.poisson(k_count, jnp.where(same, 0.0, hr * marginal_ratio(logits, y, alpha)))
        last = draw(k_last, counts.astype(jnp.float32), dtype)
        return jnp.where(counts.sum(-1) > 0, last, y)

    return _sampler(vocab_size, num_steps, ts, (a_t, scale), move)

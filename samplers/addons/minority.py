"""Minority guidance: classifier-based (Um et al. 2024) and self-guided (Um & Ye 2024).

Minority guidance (Um, Lee & Ye 2024, "Don't Play Favorites: Minority Guidance for Diffusion Models",
Sec. 3.2, Eq. 9): the minority score (the Tweedie reconstruction loss of x0 after noising) is quantised
into L levels, a classifier p(l | x_t) of the level is trained, and sampling follows
score + w grad_x log p(l = target | x_t) towards the rare levels; here the classifier is given as
``log_classifier(x, t) -> (B, L)`` logits (on a Gaussian mixture the exact component posterior, the
components ordered from common to rare, is such a classifier).

Self-guided minority sampling (Um & Ye 2024, "Self-Guided Generation of Minority Samples Using
Diffusion Models", Eq. 6-8): the minority score of x_t is how badly the model reconstructs its own
clean estimate after re-noising it to a fixed time s,

    L(x_t) = || x0_hat(x_t) - x0_hat(alpha_s x0_hat(x_t) + sigma_s n) ||^2,   n ~ N(0, I) (step key),

high on low-density (minority) features; the score is guided up it, score + w grad_x L, i.e. the
noise prediction moves by -sigma_t w grad_x L (``guidance.shift_eps``). Each solver call costs two
model calls (x_t and the re-noised point) and one backward pass; NFE counts both calls.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from samplers.addons.core import Addon, identity
from samplers.checks import check_number
from samplers.addons.guidance import classifier_guidance, shift_eps
from samplers.param import check_prediction, convert
from samplers.schedules import Schedule


def self_guided_minority(schedule: Schedule, predicts: str = "eps", strength: float = 1.0,
                         t_perturb: float | None = None) -> Addon:
    """Minority guidance of weight ``strength`` (> 0 seeks minorities; < 0 the majority) with re-noising
    time ``t_perturb`` (default: the middle of the schedule's time range)."""
    check_prediction(predicts)
    w = check_number("strength", strength)
    t_min, t_max = float(schedule.t_min), float(schedule.t_max)
    s = 0.5 * (t_min + t_max) if t_perturb is None else check_number("t_perturb", t_perturb)
    if not t_min <= s <= t_max:
        raise ValueError(f"t_perturb must be in [{t_min}, {t_max}], got {s!r}")
    if w == 0:
        return identity()

    def wrap(carry, key, fn):
        def loss(x, t):
            out = fn(x, t)
            x0 = convert(out, x, t, schedule, predicts, "x0")
            ts = jnp.asarray(s, x.dtype)
            n = jax.random.normal(key, x.shape, x.dtype)
            xs = schedule.alpha(ts).astype(x.dtype) * x0 + schedule.sigma(ts).astype(x.dtype) * n
            x0s = convert(fn(xs, ts), xs, ts, schedule, predicts, "x0")
            return jnp.sum((x0 - x0s) ** 2), out

        def guided(x, t):
            g, out = jax.grad(loss, has_aux=True)(x, t)
            return shift_eps(out, -schedule.sigma(t).astype(x.dtype) * w * g, x, t, schedule, predicts)

        return guided

    return Addon(init=lambda x, key: (), wrap=wrap, calls_per_call=2, differentiates=True)


def minority_guidance(log_classifier, scale: float, schedule: Schedule, target: int = -1,
                      predicts: str = "eps") -> Addon:
    """Classifier guidance of weight ``scale`` towards minority-score level ``target`` (default the last,
    rarest) of ``log_classifier(x, t) -> (B, L)``; 0 is the base solver, < 0 pushes towards the majority."""
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise ValueError(f"target must be an integer level index, got {target!r}")
    level = lambda x, t: jax.nn.log_softmax(log_classifier(x, t), axis=-1)[:, int(target)]
    return classifier_guidance(level, scale, schedule, predicts)

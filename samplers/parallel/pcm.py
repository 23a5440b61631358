"""Picard consistency models (PCM: So et al. 2025, "PCM: Picard Consistency Model for Fast Parallel
Sampling of Diffusion Models", CVPR 2025, arXiv 2503.19731): the sampling side.

Picard iteration X^{k+1} = Phi(X^k) over a whole trajectory X = (x_0 .. x_N) of an ODE sampler
(``picard.picard_sweep``, the update of ``picard.parallel_sample`` with window = num_steps)
converges to the sequential trajectory X*. A PCM is a model fine-tuned so that ONE Picard update
with it, from any iterate X^k of the base model's iteration, lands on X* (the objective:
``train.distill.pcm``). At inference the driver blends the two models, m = m_base + lambda_r
(m_PCM - m_base), lambda_r falling to 0 over the first rounds (``picard.Switch``; the paper's
model switching), so the iteration ends as plain Picard of the base model and converges to the
base sampler's own output: the PCM changes the speed, never the answer.

* ``linear_switch(pcm_fn, switch_rounds)``: lambda_r = 1 - r / switch_rounds for r < switch_rounds.
* ``picard_targets(sampler, model_fn, x, rounds, key)``: the base model's Picard iterates X^0 ..
  X^{rounds-1} from the driver's first guess (every point = x_0) and the sequential X*: the
  inputs and the target of the PCM objective.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from samplers.checks import check_int
from samplers.core import ModelFn, PRNGKey, Sampler, sample
from samplers.parallel.picard import Switch, check_switch, picard_sweep, start_state


def linear_switch(pcm_fn: ModelFn, switch_rounds: int) -> Switch:
    """The ``Switch`` of ``pcm_fn`` whose weight falls linearly from 1 (round 0) to 0 at round
    ``switch_rounds`` (an integer >= 1): lambda_r = 1 - r / switch_rounds."""
    switch_rounds = check_int("switch_rounds", switch_rounds)
    switch = Switch(pcm_fn, tuple(1.0 - r / switch_rounds for r in range(switch_rounds)))
    check_switch(switch)
    return switch


def first_guess(sampler: Sampler, model_fn: ModelFn, x, key: PRNGKey | None = None):
    """(X^0, keys): the driver's first guess of the whole trajectory (S_0 at every point, ``i`` = 0..N)
    and the N step keys (``picard.start_state``)."""
    state0, keys = start_state(sampler, model_fn, x, key)
    n = sampler.num_steps
    states = jax.tree.map(lambda a: jnp.broadcast_to(a, (n + 1,) + a.shape), state0)
    return states.replace(i=jnp.arange(n + 1, dtype=state0.i.dtype)), keys


def picard_targets(sampler: Sampler, model_fn: ModelFn, x, rounds: int, key: PRNGKey | None = None):
    """(iterates, keys, x_star): the base model's Picard iterates X^0 .. X^{rounds-1} stacked on a
    leading axis (states of shape (rounds, N + 1, B, ...)), the step keys, and the sequential
    trajectory's x (N + 1, B, ...), X*, the iteration's fixed point."""
    rounds = check_int("rounds", rounds)
    start, keys = first_guess(sampler, model_fn, x, key)

    def sweep(states, _):
        return picard_sweep(sampler, model_fn, states, keys), states

    iterates = jax.lax.scan(sweep, start, None, length=rounds)[1]
    _, xs = sample(sampler, model_fn, x, key, trajectory=lambda s: s.x)
    return iterates, keys, jnp.concatenate([start.x[:1], xs])

"""Inference-time search over a stochastic sampler's Gaussian transitions, guided by a reward.

All methods read the base kernel from ``Sampler.transition`` (``samplers.core.Transition``):
a candidate for step i is ``mean + scale z``. The base must be memoryless (its state is x, i
and nfe only: DDPM, DDIM with eta > 0, Euler-Maruyama, the flow SDE), so that a particle is
its sample alone and can be copied, selected or expanded freely. The value of a partially
denoised x_t is the reward of its posterior mean, v(x_t) = r(x0_hat(x_t)) (derivative-free;
SVDD's "PM" value). SVDD and beam search cache the transition computed with a value, so the
next step from a kept particle costs no extra model call.

* ``best_of_n``: N full runs, keep the highest reward (a pure function).
* ``svdd`` (Li et al. 2024, "Derivative-free guidance ... soft value-based decoding"): at
  each step M candidates from the base kernel, one kept with probability ~ exp(v / alpha);
  alpha = 0 is the argmax of the reference code.
* ``beam_search``: block-wise beam search over denoising trajectories with a verifier: K
  beams, each extended by L stochastic continuations of ``block`` steps, the K best
  (by value) kept.
* ``tree_search`` (Jain et al. 2025, diffusion tree sampling / search): a tree over the
  denoising levels in a fixed-capacity node buffer; each step selects a node, expands one
  child with the base kernel, rolls it out to x0, and backs up soft values to the root
  (``lax.while_loop``).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import logsumexp

from samplers.checks import check_int, check_number, check_positive
from samplers.core import Sampler, Transition, sample
from samplers.ode.common import check_choice
from samplers.param import to_x0_eps
from samplers.schedules import Schedule


# -- the base kernel and argument checks ---------------------------------------------------------

def check_base(sampler, name: str = "sampler") -> Sampler:
    """A memoryless Gaussian-transition ``Sampler`` (its state only x, i, nfe), else ValueError."""
    if not isinstance(sampler, Sampler) or sampler.transition is None:
        got = type(sampler).__name__ if not isinstance(sampler, Sampler) else "a Sampler without transition"
        raise ValueError(f"{name} must be a Sampler whose step is a Gaussian transition (sampler.transition set: "
                         f"ddpm, ddim_eta with eta > 0, euler_maruyama, flow_sde), got {got}")
    leaves = jax.tree_util.tree_leaves(jax.eval_shape(sampler.init, jax.ShapeDtypeStruct((2, 3), jnp.float32)))
    if len(leaves) != 3:
        raise ValueError(f"{name} must be memoryless (state x, i, nfe only; e.g. ddpm, ddim_eta, euler_maruyama, "
                         f"flow_sde), its state has {len(leaves)} arrays (a multistep history?)")
    return sampler


def check_reward(reward_fn):
    if not callable(reward_fn):
        raise ValueError(f"reward_fn must be a callable x (n, ...) -> (n,), got {type(reward_fn).__name__}")
    return reward_fn


def kernel(sampler: Sampler, x, i, model_fn) -> Transition:
    """Step i's Gaussian transition of the memoryless ``sampler`` from ``x``."""
    return sampler.transition(sampler.init(x).replace(i=jnp.asarray(i, jnp.int32)), model_fn)


def draw(mean, scale, key):
    return mean + scale * jax.random.normal(key, mean.shape, mean.dtype)


def lookahead(sampler: Sampler, schedule: Schedule, reward_fn: Callable, x, i, model_fn):
    """(value, mean, scale): the value r(x0_hat(x)) of particles x at level i (the reward of x
    itself at the last level ``num_steps``) and step i's transition from x, by one model call."""
    tr = kernel(sampler, x, jnp.minimum(i, sampler.num_steps - 1), model_fn)
    x0 = tr.output if tr.space == "x0" else to_x0_eps(tr.output, x, tr.t, schedule, tr.space)[0]
    value = reward_fn(jnp.where(i >= sampler.num_steps, x, x0))
    return value, tr.mean, jnp.asarray(tr.scale, x.dtype)


# -- best-of-N -----------------------------------------------------------------------------------

def best_of_n(sampler: Sampler, model_fn: Callable, reward_fn: Callable, x, key):
    """Best-of-N: run ``sampler`` from the N starts ``x`` (N, ...) and return (the sample of the
    highest reward, that reward, all N rewards). Pure and jit-able (sampler, model_fn, reward_fn
    static); N * sampler.nfe model calls. Several problems are a vmap."""
    if x.ndim < 2:
        raise ValueError(f"x must hold the N candidates on a leading axis, shape (N, ...), got {x.shape}")
    final = sample(sampler, model_fn, x, key)
    r = reward_fn(final.x)
    best = jnp.argmax(r)
    return final.x[best], r[best], r


# -- SVDD and beam search -------------------------------------------------------------------------

@struct.dataclass
class LookaheadState:
    x: jax.Array  # (B, ...) SVDD: one particle per problem; beam search: the K beams of one problem
    i: jax.Array
    nfe: jax.Array
    value: jax.Array  # (B,) r(x0_hat(x))
    mean: jax.Array  # the cached transition of the next step from x
    scale: jax.Array


def lookahead_init(sampler, schedule, reward_fn):
    def init(x, key=None, model_fn=None):
        del key
        if model_fn is None:
            raise ValueError("model_fn is needed to initialise (the first value and transition)")
        z = jnp.zeros((), jnp.int32)
        value, mean, scale = lookahead(sampler, schedule, reward_fn, x, z, model_fn)
        return LookaheadState(x=x, i=z, nfe=z + 1, value=value, mean=mean, scale=scale)

    return init


def svdd(sampler: Sampler, schedule: Schedule, reward_fn: Callable, num_candidates: int = 8,
         alpha: float = 0.0) -> Sampler:
    """SVDD-PM (Li et al. 2024, Alg. 1): each of the B rows of x is one problem; per step M
    candidates x_{i+1}^m ~ base kernel, values v_m = r(x0_hat(x_{i+1}^m)), one kept with
    probability softmax(v / alpha) (argmax for alpha = 0). nfe = 1 + M num_steps."""
    check_base(sampler)
    check_reward(reward_fn)
    m = check_int("num_candidates", num_candidates)
    alpha = check_number("alpha", alpha, 0.0)
    n = sampler.num_steps

    def step(state, key, model_fn):
        kz, ks = jax.random.split(key)
        b = state.x.shape[0]
        cand = draw(jnp.broadcast_to(state.mean, (m,) + state.mean.shape), state.scale, kz)  # (M, B, ...)
        flat = cand.reshape((m * b,) + cand.shape[2:])
        value, mean, scale = lookahead(sampler, schedule, reward_fn, flat, state.i + 1, model_fn)
        value = value.reshape(m, b)
        pick = jnp.argmax(value, 0) if alpha == 0.0 else jax.random.categorical(ks, value / alpha, axis=0)
        cols = jnp.arange(b)
        keep = lambda a: a.reshape((m, b) + a.shape[1:])[pick, cols]
        return LookaheadState(x=keep(flat), i=state.i + 1, nfe=state.nfe + m, value=value[pick, cols],
                              mean=keep(mean), scale=scale)

    return Sampler(init=lookahead_init(sampler, schedule, reward_fn), step=step, num_steps=n, nfe=1 + m * n)


def beam_search(sampler: Sampler, schedule: Schedule, reward_fn: Callable, num_expansions: int = 4,
                block: int = 1) -> Sampler:
    """Block-wise beam search: x (K, ...) holds the K beams of one problem (several problems are
    a vmap). A step extends every beam by ``num_expansions`` = L stochastic continuations of
    ``block`` base steps (the last block may be shorter) and keeps the K of the K L continuations
    with the highest value r(x0_hat) (the verifier), best first. ``nfe`` (state and Sampler)
    counts model calls per beam, 1 + L num_steps: a problem of K beams costs K times that."""
    check_base(sampler)
    check_reward(reward_fn)
    el = check_int("num_expansions", num_expansions)
    s = check_int("block", block)
    n = sampler.num_steps
    if s > n:
        raise ValueError(f"block must be <= the base sampler's num_steps = {n}, got {block}")

    def step(state, key, model_fn):
        k = state.x.shape[0]
        keys = jax.random.split(key, s)
        tile = lambda a: jnp.broadcast_to(a, (el,) + a.shape).reshape((el * k,) + a.shape[1:])
        x = draw(tile(state.mean), state.scale, keys[0])

        def inner(carry, kk):
            x, i = carry
            tr = kernel(sampler, x, jnp.minimum(i, n - 1), model_fn)
            live = i < n  # steps past the end of the base grid (a shorter last block) are skipped
            return (jnp.where(live, draw(tr.mean, tr.scale, kk), x), i + live.astype(i.dtype)), None

        (x, i), _ = jax.lax.scan(inner, (x, state.i + 1), keys[1:])
        value, mean, scale = lookahead(sampler, schedule, reward_fn, x, i, model_fn)
        _, top = jax.lax.top_k(value, k)
        return LookaheadState(x=x[top], i=i, nfe=state.nfe + el * (i - state.i), value=value[top],
                              mean=mean[top], scale=scale)

    return Sampler(init=lookahead_init(sampler, schedule, reward_fn), step=step, num_steps=-(-n // s),
                   nfe=1 + el * n)


# -- diffusion tree sampling / search ---------------------------------------------------------------

@struct.dataclass
class TreeState:
    x: jax.Array  # (B, ...) the output of each problem's tree (x_T before the first expansion)
    i: jax.Array  # expansions done
    nfe: jax.Array  # (B,) model calls per tree
    nodes: jax.Array  # (B, C, 1, ...) node samples x_t
    level: jax.Array  # (B, C) denoising level of each node (root 0, data num_steps)
    parent: jax.Array  # (B, C), -1 at the root
    children: jax.Array  # (B, C, W) child indices, -1 where empty
    value: jax.Array  # (B, C) backed-up soft values
    reward: jax.Array  # (B, C) reward of each node's own rollout (-inf at the root)
    x0: jax.Array  # (B, C, 1, ...) the rollout sample of each node


TREE_MODES = ("sample", "search")
_TREE = ("nodes", "level", "parent", "children", "value", "reward", "x0", "nfe")


def tree_search(sampler: Sampler, reward_fn: Callable, num_expansions: int, width: int = 4,
                lam: float = 1.0, mode: str = "sample") -> Sampler:
    """Diffusion tree sampling (``mode="sample"``) / search (``"search"``) after Jain et al. (2025).

    Each of the B rows of x_T roots one tree of capacity 1 + ``num_expansions`` nodes; one step is
    one expansion: (1) select: from the root, while the node has ``width`` children, go to a child
    ~ softmax(lam v) (search: argmax v; progressive widening); (2) expand: a new child ~ the base
    kernel; (3) roll it out to the data level with the base kernel (its value is the reward of
    the rollout); (4) back up soft values from its parent to the root, a node's own rollout
    counting as one sample beside its children: v = (1/lam) log [(exp(lam r_own) +
    sum_c exp(lam v_c)) / (1 + #children)]. A selected node at the data level expands nothing.
    The state's x is the output: ``"sample"`` descends from the root, at each node stopping at its
    own rollout or moving to a child with probability ~ exp(lam r_own), exp(lam v_c), and returns
    the rollout reached (an approximate draw from p exp(lam r)); ``"search"`` returns the best
    rollout found. An expansion at level l costs num_steps - l model calls."""
    check_base(sampler)
    check_reward(reward_fn)
    e = check_int("num_expansions", num_expansions)
    w = check_int("width", width)
    lam = check_positive("lam", lam)
    check_choice("mode", mode, TREE_MODES)
    n, cap = sampler.num_steps, 1 + e

    def logits_of(t, node, own):
        """lam * (soft values of the children of ``node``, -inf where empty) [, its own rollout]."""
        kids = t["children"][node]
        lg = jnp.where(kids >= 0, lam * t["value"][jnp.maximum(kids, 0)], -jnp.inf)
        return jnp.concatenate([lg, lam * t["reward"][node][None]]) if own else lg

    def pick(logits, key):
        return jnp.argmax(logits) if mode == "search" else jax.random.categorical(key, logits)

    def select(t, key):
        full = lambda nd: (jnp.sum(t["children"][nd] >= 0) >= w) & (t["level"][nd] < n)

        def body(c):
            node, k = c
            k, kc = jax.random.split(k)
            return t["children"][node][pick(logits_of(t, node, False), kc)], k

        return jax.lax.while_loop(lambda c: full(c[0]), body, (jnp.zeros((), jnp.int32), key))[0]

    def rollout(x, level, key, model_fn):
        def body(c):
            x, lv, k = c
            k, kz = jax.random.split(k)
            tr = kernel(sampler, x, lv, model_fn)
            return draw(tr.mean, tr.scale, kz), lv + 1, k

        return jax.lax.while_loop(lambda c: c[1] < n, body, (x, level, key))[0]

    def backup(t, node):
        def body(c):
            t, p = c
            lg = logits_of(t, p, True)
            soft = (logsumexp(lg) - jnp.log(jnp.sum(jnp.isfinite(lg)))) / lam
            return dict(t, value=t["value"].at[p].set(soft)), t["parent"][p]

        return jax.lax.while_loop(lambda c: c[1] >= 0, body, (t, t["parent"][node]))[0]

    def grow(t, c, key, model_fn):
        """Expansion number c (the new node's slot) of one tree."""
        ksel, kz, kr = jax.random.split(key, 3)
        node = select(t, ksel)
        lv = t["level"][node]

        def expand(t):
            tr = kernel(sampler, t["nodes"][node], lv, model_fn)
            child = draw(tr.mean, tr.scale, kz)
            x0 = rollout(child, lv + 1, kr, model_fn)
            r = reward_fn(x0)[0]
            slot = jnp.argmin(t["children"][node] >= 0)  # the first empty slot
            t = dict(t, nodes=t["nodes"].at[c].set(child), level=t["level"].at[c].set(lv + 1),
                     parent=t["parent"].at[c].set(node), children=t["children"].at[node, slot].set(c),
                     value=t["value"].at[c].set(r), reward=t["reward"].at[c].set(r), x0=t["x0"].at[c].set(x0),
                     nfe=t["nfe"] + (n - lv))
            return backup(t, c)

        return jax.lax.cond(lv < n, expand, lambda t: t, t)

    def output(t, key):
        if mode == "search":
            return t["x0"][jnp.argmax(t["reward"])][0]

        def body(c):
            node, k, _ = c
            k, kc = jax.random.split(k)
            j = pick(logits_of(t, node, True), kc)
            return jnp.where(j < w, t["children"][node][jnp.minimum(j, w - 1)], node), k, j == w

        node = jax.lax.while_loop(lambda c: ~c[2], body, (jnp.zeros((), jnp.int32), key, jnp.zeros((), bool)))[0]
        return t["x0"][node][0]

    def init(x, key=None, model_fn=None):
        del key, model_fn
        b = x.shape[0]
        nodes = jnp.zeros((b, cap, 1) + x.shape[1:], x.dtype).at[:, 0, 0].set(x)
        return TreeState(x=x, i=jnp.zeros((), jnp.int32), nfe=jnp.zeros((b,), jnp.int32), nodes=nodes,
                         level=jnp.zeros((b, cap), jnp.int32), parent=jnp.full((b, cap), -1, jnp.int32),
                         children=jnp.full((b, cap, w), -1, jnp.int32), value=jnp.zeros((b, cap), x.dtype),
                         reward=jnp.full((b, cap), -jnp.inf, x.dtype), x0=nodes)

    def step(state, key, model_fn):
        b = state.x.shape[0]
        kg, ko = jax.random.split(key)

        def one(tree, k1, k2):
            tree = grow(tree, state.i + 1, k1, model_fn)
            return tree, output(tree, k2)

        tree = {f: getattr(state, f) for f in _TREE}
        tree, x = jax.vmap(one)(tree, jax.random.split(kg, b), jax.random.split(ko, b))
        return state.replace(x=x, i=state.i + 1, **tree)

    return Sampler(init=init, step=step, num_steps=e, nfe=e * n)

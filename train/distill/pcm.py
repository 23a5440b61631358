"""The Picard consistency model (PCM: So et al. 2025, "PCM: Picard Consistency Model for Fast Parallel
Sampling of Diffusion Models", CVPR 2025, arXiv 2503.19731) as an objective of the one train loop.

The student is the frozen teacher (the base model) plus a learnt residual, an MLP (``config.model``,
``model.name="mlp"``) whose last layer starts at zero: m_PCM(x, t) = m_base(x, t) + r_theta(x, t) in
``config.predicts``, so the untrained PCM is the base bit for bit and the switch's lambda scales r.
Per batch, from x_T = init_scale z and the base sampler S (``distill.kwargs.sampler`` with ``nfe``
calls, an ODE solver whose state is x alone: ``consistency.TEACHER_SOLVERS``; built like
``config.sampler``):

* the base model's Picard iterates X^0 .. X^{K-1} over the whole trajectory (window = N, X^0 the
  driver's first guess, every point x_T) and its sequential trajectory X*, the fixed point
  (``samplers.parallel.pcm.picard_targets``; teacher frozen, no gradient);
* each sample's k uniform in [0, K) (``rounds`` = K); ONE Picard update with the student,
  ``samplers.parallel.picard.picard_sweep`` (the driver's own update), from its X^k;
* loss = mean over the trajectory's points 1..N, the samples and the coordinates of
  (Phi_theta(X^k) - X*)^2 (the paper's || Phi_theta(X^k) - X* ||^2); ``weight="scale"`` weights
  point j + 1 by 1 / g_j^2 (the driver's per-step scale), measured worse (more rounds) on the mixture.

Measured (bench/distill.py --parts pcm, configs/distill_gmm_pcm.py: 8-D mixture, DDIM 50, K = 1,
switch_rounds = 1, MLP 3 x 256, 4000 steps): each sample run alone takes 1.26x (tol 0.3) / 1.19x
(tol 0.1) fewer rounds than plain Picard; a batch of 128 (the slowest sample's rounds) gains nothing.
K = 4 with switch_rounds = 2 was worse than K = 1.

Sampling: ``parallel_of(config, params)`` gives the time-parallel driver of the base sampler with the
PCM switch (``picard.Switch`` by ``pcm.linear_switch(pcm, switch_rounds)``) and the base model;
``launch.py`` sample / eval run the base sampler sequentially with the base model (the registry's
``Sampler`` shape has no room for a parallel driver): the exact output the switched parallel run
converges to.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from samplers import registry
from samplers.checks import check_int
from samplers.core import Sampler
from samplers.ode.common import check_choice
from samplers.param import as_prediction
from samplers.parallel import step_scale, time_parallel
from samplers.parallel.pcm import linear_switch, picard_targets
from samplers.parallel.picard import picard_sweep
from train.distill import DistillMethod, kwargs_over, register
from train.distill.teacher import WithTeacher
from train.distill.consistency import TEACHER_SOLVERS as BASE_SAMPLERS
from train.loop import TrainState, apply_gradients, init_state

DEFAULTS = dict(sampler="ddim", nfe=50, rounds=1, switch_rounds=1, weight="none")  # K = 1, one PCM round: best measured
WEIGHTS = ("none", "scale")


def zero_last_layer(params):
    """An MLP's parameters (``models.mlp``: ``Dense_0`` .. ``Dense_depth``) with the last layer set to 0."""
    last = max((k for k in params if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    return {**params, last: jax.tree_util.tree_map(jnp.zeros_like, params[last])}


@dataclasses.dataclass(frozen=True, eq=False)
class PCMTrainer(WithTeacher):
    """A loop ``Method`` (``train.loop.ObjectiveMethod``) for the PCM objective."""

    sampler: Sampler  # the base sampler S
    scale: tuple  # g_j of the driver's convergence test (``picard.step_scale`` of S's grid)
    predicts: str  # the output space of the base model, the residual and S
    opts: dict
    init_scale: float
    teacher: Any = None

    def base(self, frozen) -> Callable:
        """The teacher's model_fn in ``predicts``."""
        t = self.teacher
        return as_prediction(t.model_fn(frozen), t.schedule, t.predicts, self.predicts)

    @staticmethod
    def pcm(network, params, base: Callable) -> Callable:
        """m_PCM(x, t) = m_base(x, t) + r_theta(x, t)."""
        return lambda x, t: base(x, t) + network.apply(params, x, t)

    def init_state(self, network, tx, key):
        base = init_state(network, tx, key)
        params = zero_last_layer(base.params)
        return TrainState(base.step, params, jax.tree_util.tree_map(jnp.copy, params), tx.init(params))

    def loss(self, network, params, x_t, k, frozen):
        """mean (Phi_theta(X^k) - X*)^2 over points 1..N (module doc); ``k`` (B,) each sample's round."""
        base = self.base(frozen)
        iterates, keys, x_star = jax.lax.stop_gradient(picard_targets(self.sampler, base, x_t, self.opts["rounds"]))
        pick = jax.vmap(lambda a, kb: a[kb], in_axes=(2, 0), out_axes=1)  # x: (K, N+1, B, ...) -> (N+1, B, ...)
        start = jax.tree_util.tree_map(lambda a: a[0], iterates).replace(x=pick(iterates.x, k))
        out = picard_sweep(self.sampler, self.pcm(network, params, base), start, keys)
        err = jnp.mean(jnp.square(out.x[1:] - x_star[1:]).reshape(x_star.shape[0] - 1, -1), axis=1)  # (N,)
        if self.opts["weight"] == "none":
            return jnp.mean(err)
        w = 1.0 / jnp.square(jnp.asarray(self.scale, jnp.float32))  # point j+1 is tested against g_j
        return jnp.sum(w * err) / jnp.sum(w)

    def train_step(self, network, tx, decay: float, warmup: bool = True) -> Callable:
        def step(state, batch, key, frozen):
            kz, kk = jax.random.split(key)
            x_t = jax.random.normal(kz, batch.shape, batch.dtype) * self.init_scale  # data: batch shape only
            k = jax.random.randint(kk, batch.shape[:1], 0, self.opts["rounds"])
            loss, grads = jax.value_and_grad(lambda p: self.loss(network, p, x_t, k, frozen))(state.params)
            new = apply_gradients(state, grads, tx, decay, warmup)
            return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}

        return step


# -- registration ------------------------------------------------------------------------------------

def options(config) -> dict:
    """``distill.kwargs`` over ``DEFAULTS``; a ValueError names an unknown field."""
    return kwargs_over(config, DEFAULTS)


def base_sampler(config) -> tuple[Sampler, tuple]:
    """(the base sampler S: ``distill.kwargs.sampler`` at ``nfe`` calls with ``config.sampler``'s spacing and
    final, the scale g of the driver's convergence test on its grid: ``picard.step_scale``)."""
    from train.config import build_schedule

    o, sch, s = options(config), build_schedule(config), config.sampler
    smp = registry.build(o["sampler"], sch, o["nfe"], config.predicts, spacing=s.spacing, final=s.final)
    return smp, tuple(step_scale(registry.grid(o["sampler"], sch, o["nfe"], spacing=s.spacing, final=s.final)))


def check(config) -> None:
    from train.config import as_tuple

    o = options(config)
    check_choice("distill.kwargs.sampler", o["sampler"], BASE_SAMPLERS)
    check_int("distill.kwargs.nfe", o["nfe"], 1)
    check_int("distill.kwargs.rounds", o["rounds"], 1)
    check_int("distill.kwargs.switch_rounds", o["switch_rounds"], 1)
    check_choice("distill.kwargs.weight", o["weight"], WEIGHTS)
    if as_tuple(config.sampler.name) != (o["sampler"],) or as_tuple(config.sampler.nfe) != (o["nfe"],):
        raise ValueError(f"sampler.name / sampler.nfe must be the PCM's base sampler ({o['sampler']!r},) / "
                         f"({o['nfe']},) (distill.kwargs.sampler, nfe), got {as_tuple(config.sampler.name)} / "
                         f"{as_tuple(config.sampler.nfe)}")
    if config.model.name != "mlp":
        raise ValueError(f"the PCM residual is model.name='mlp' (its last layer starts at 0), got "
                         f"model.name={config.model.name!r}")
    base_sampler(config)  # builds (else the registry's ValueError)


def build(config, network, teacher):
    from train.config import build_schedule
    from train.jobs import init_scale

    return PCMTrainer(*base_sampler(config), config.predicts, options(config), init_scale(build_schedule(config)),
                      teacher)


def model_fn(config, network, params, name, nfe):
    """The base model (the teacher in ``config.predicts``): what the switched parallel run converges to."""
    from train.distill.teacher import load_teacher

    del network, params, name, nfe
    with jax.ensure_compile_time_eval():  # inside the sampler's jit: a workdir teacher's restore needs concrete arrays
        teacher = load_teacher(config)
    return build(config, None, teacher).base(teacher.params)


def parallel_of(config, network, params, teacher, tol: float | None = None, **options):
    """(the time-parallel driver of the base sampler with the PCM switch of ``params``, the base model_fn):
    window = N, ``tol`` (None: ``picard.default_tol`` of plain Picard), scale ``step_scale`` of the base grid,
    ``linear_switch`` over ``distill.kwargs.switch_rounds``; ``options`` go to ``time_parallel``."""
    trainer = build(config, network, teacher)
    base = trainer.base(teacher.params)
    smp = trainer.sampler
    par = time_parallel(smp, smp.num_steps, tol, trainer.scale,
                        switch=linear_switch(trainer.pcm(network, params, base), trainer.opts["switch_rounds"]),
                        **options)
    return par, base


register("pcm", DistillMethod(build, model_fn, BASE_SAMPLERS, "required", check))

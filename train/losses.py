"""Training objectives for diffusion and flow models, x_t = alpha(t) x0 + sigma(t) eps.

* Denoising score matching (Ho et al. 2020; Song et al. 2021; Salimans & Ho 2022):
  the network F regresses the target of its parameterisation ``predicts`` --
  eps, x0, v = alpha eps - sigma x0, or the flow velocity u = alpha' x0 + sigma' eps
  -- built from (x0, eps) by ``samplers.param.from_x0_eps``:

      L = E_{t, x0, eps} w(t) mean_dims (F(x_t, t) - target)^2.

* Rectified flow / flow matching (Liu et al. 2023; Lipman et al. 2023): the
  ``flow`` schedule (alpha = 1 - t, sigma = t) with ``predicts="velocity"``,
  target u = eps - x0.
* EDM preconditioning (Karras et al. 2022, Table 1), for any schedule with
  alpha > 0, on the scaled variables x^ = x / alpha, s = sigma / alpha:

      D(x, t) = c_skip(s) x^ + c_out(s) F(c_in(s) x^, c_noise(s)),
      c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2),
      c_in = 1 / sqrt(s^2 + sd^2), c_noise = log(s) / 4,

  so D predicts x0; the EDM weighting is lambda(s) = (s^2 + sd^2) / (s sd)^2 on
  the x0 error.
* Input perturbation (Ning et al. 2023, "Input Perturbation Reduces Exposure Bias in Diffusion
  Models", Alg. 1), ``input_perturbation`` gamma > 0: the network sees x_t = alpha x0 + sigma (eps +
  gamma xi), xi ~ N(0, I), while the target is still built from (x0, eps); gamma = 0 is the plain loss.

Times are drawn ``uniform`` on [t_lo, t_hi] or ``lognormal`` (EDM):
log(sigma / alpha) ~ N(p_mean, p_std^2), mapped to the schedule's time by
``t_from_lambda`` and clipped to its range.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from samplers.ode.common import check_choice
from samplers.param import check_prediction, from_x0_eps
from samplers.schedules import Schedule

TIME_SAMPLINGS = ("uniform", "lognormal")
WEIGHTINGS = ("none", "edm")
PRECONDITIONINGS = ("none", "edm")

Apply = Callable[[jax.Array, jax.Array], jax.Array]  # network(x, t) with t of shape (B,)


def _per_sample(t, x):
    """t of shape () or (B,) reshaped to broadcast against x of shape (B, ...)."""
    t = jnp.asarray(t, x.dtype)
    return t if t.ndim == 0 else t.reshape(t.shape + (1,) * (x.ndim - 1))


def edm_coefficients(s, sigma_data: float):
    """(c_skip, c_out, c_in, c_noise) of Karras et al. (2022), Table 1, at noise level s."""
    sd2 = sigma_data**2
    norm = s * s + sd2
    return sd2 / norm, s * sigma_data * jax.lax.rsqrt(norm), jax.lax.rsqrt(norm), 0.25 * jnp.log(s)


def edm_weight(s, sigma_data: float):
    """lambda(s) = (s^2 + sd^2) / (s sd)^2, the EDM loss weight (= 1 / c_out^2)."""
    return (s * s + sigma_data**2) / (s * sigma_data) ** 2


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    """A training objective: schedule, network parameterisation, time law, weighting, preconditioning.

    ``model_fn(apply)`` turns the raw network ``apply(x, t)`` into the model the
    samplers see (it predicts ``predicts`` in the schedule's own time ``t``, scalar
    or per sample); ``loss(apply, x0, key)`` is the Monte-Carlo loss on a batch.
    """

    schedule: Schedule
    predicts: str = "eps"
    time_sampling: str = "uniform"
    t_lo: float | None = None
    t_hi: float | None = None
    p_mean: float = -1.2
    p_std: float = 1.2
    weighting: str = "none"
    precond: str = "none"
    sigma_data: float = 0.5
    input_perturbation: float = 0.0

    def __post_init__(self):
        check_prediction(self.predicts)
        gamma = self.input_perturbation
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma < float("inf"):
            raise ValueError(f"input_perturbation must be a finite number >= 0, got {self.input_perturbation!r}")
        check_choice("time_sampling", self.time_sampling, TIME_SAMPLINGS)
        check_choice("weighting", self.weighting, WEIGHTINGS)
        check_choice("precond", self.precond, PRECONDITIONINGS)
        if self.precond == "edm" and self.predicts != "x0":
            raise ValueError(f"precond='edm' makes the model a denoiser: predicts must be 'x0', got {self.predicts!r}")
        if self.weighting == "edm" and self.predicts != "x0":
            raise ValueError(f"weighting='edm' weights the x0 error: predicts must be 'x0', got {self.predicts!r}")
        if self.precond == "edm" and float(self.schedule.alpha(self.schedule.t_max)) <= 0.0:
            raise ValueError(f"precond='edm' needs alpha(t) > 0 on the whole range of the {self.schedule.name} schedule")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data!r}")
        if not self.p_std > 0:
            raise ValueError(f"p_std must be > 0, got {self.p_std!r}")
        lo, hi = self.time_range
        self.schedule.check_t([lo, hi], "t_lo/t_hi")
        if not hi > lo:
            raise ValueError(f"t_hi ({hi}) must be greater than t_lo ({lo})")

    @property
    def time_range(self) -> tuple[float, float]:
        lo = self.schedule.t_min if self.t_lo is None else float(self.t_lo)
        hi = self.schedule.t_max if self.t_hi is None else float(self.t_hi)
        return lo, hi

    def sample_t(self, key, n: int, dtype=jnp.float32) -> jax.Array:
        """n training times from the objective's time law."""
        lo, hi = self.time_range
        if self.time_sampling == "uniform":
            return jax.random.uniform(key, (n,), dtype, lo, hi)
        log_s = self.p_mean + self.p_std * jax.random.normal(key, (n,), dtype)
        return jnp.clip(self.schedule.t_from_lambda(-log_s), lo, hi).astype(dtype)

    def model_fn(self, apply: Apply) -> Apply:
        """The model of type ``predicts`` built from the raw network (EDM-preconditioned if asked)."""
        if self.precond == "none":
            return apply

        def denoiser(x, t):
            tb = _per_sample(t, x)
            a, s = self.schedule.alpha(tb), self.schedule.sigma(tb)
            s = s / a
            c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
            c_noise = jnp.broadcast_to(jnp.reshape(c_noise, (-1,)), (x.shape[0],))
            return c_skip * (x / a) + c_out * apply(c_in * (x / a), c_noise)

        return denoiser

    def loss_terms(self, model: Apply, x0, eps, t, xi=None):
        """Per-sample weighted squared error of ``model`` (already wrapped) at given (x0, eps, t); with
        ``xi`` the model input is perturbed to alpha x0 + sigma (eps + input_perturbation xi)."""
        tb = _per_sample(t, x0)
        a, s = self.schedule.alpha(tb), self.schedule.sigma(tb)
        x = a * x0 + s * eps
        target = from_x0_eps(x0, eps, x, tb, self.schedule, self.predicts)
        x_in = x if xi is None else x + s * self.input_perturbation * xi
        err = jnp.mean(jnp.square(model(x_in, t) - target).reshape(x0.shape[0], -1), axis=1)
        if self.weighting == "edm":
            s_hat = (self.schedule.sigma(t) / self.schedule.alpha(t)).astype(err.dtype)
            err = err * edm_weight(s_hat, self.sigma_data)
        return err

    def loss(self, apply: Apply, x0, key) -> jax.Array:
        """Monte-Carlo loss on the batch ``x0`` with fresh times and noise from ``key``."""
        kt, ke = jax.random.split(key)
        t = self.sample_t(kt, x0.shape[0], x0.dtype)
        eps = jax.random.normal(ke, x0.shape, x0.dtype)
        xi = None
        if self.input_perturbation > 0:
            xi = jax.random.normal(jax.random.fold_in(ke, 1), x0.shape, x0.dtype)
        return jnp.mean(self.loss_terms(self.model_fn(apply), x0, eps, t, xi))


def objective_from_config(schedule: Schedule, predicts: str, loss_cfg) -> Objective:
    """Build an ``Objective`` from the ``config.train.loss`` section."""
    return Objective(
        schedule=schedule,
        predicts=predicts,
        time_sampling=loss_cfg.time_sampling,
        t_lo=loss_cfg.t_lo,
        t_hi=loss_cfg.t_hi,
        p_mean=loss_cfg.p_mean,
        p_std=loss_cfg.p_std,
        weighting=loss_cfg.weighting,
        precond=loss_cfg.precond,
        sigma_data=loss_cfg.sigma_data,
        input_perturbation=loss_cfg.input_perturbation,
    )

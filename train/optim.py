"""The optax optimiser of ``config.train``: Adam / AdamW (Kingma & Ba 2015; Loshchilov & Hutter
2019) with linear warmup, an optional cosine decay, and gradient clipping by global norm."""
from __future__ import annotations

import optax

from samplers.ode.common import check_choice

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(lr: float, num_steps: int, warmup_steps: int = 0, decay: str = "constant",
                  final_fraction: float = 0.0) -> optax.Schedule:
    """Linear warmup from 0 over ``warmup_steps``, then constant or cosine decay to ``final_fraction * lr``."""
    check_choice("lr_schedule", decay, LR_SCHEDULES)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if warmup_steps < 0 or warmup_steps > num_steps:
        raise ValueError(f"warmup_steps must lie in [0, num_steps={num_steps}], got {warmup_steps!r}")
    if decay == "constant":
        main = optax.constant_schedule(lr)
    else:
        main = optax.cosine_decay_schedule(lr, max(num_steps - warmup_steps, 1), alpha=final_fraction)
    if warmup_steps == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), main], [warmup_steps])


def make_optimizer(cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimiser, learning-rate schedule) from the ``config.train`` section."""
    check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    if cfg.grad_clip < 0:
        raise ValueError(f"grad_clip must be >= 0 (0 = no clipping), got {cfg.grad_clip!r}")
    lr = learning_rate(cfg.lr, cfg.num_steps, cfg.warmup_steps, cfg.lr_schedule)
    if cfg.optimizer == "adam":
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        opt = optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(cfg.grad_clip), opt)
    return opt, lr

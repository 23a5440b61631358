"""A shortcut model (Frans et al. 2024) of the 8x8 digits, trained from scratch (no teacher).

    python launch.py --config=configs/distill_digits_shortcut.py                       # mode=train
    python launch.py --config=configs/distill_digits_shortcut.py --config.mode=sample  # 1, 2, 4, 8 steps
    python launch.py --config=configs/distill_digits_shortcut.py --config.mode=eval

One network s(x_t, t, d) on the flow schedule, conditioned on the step size d
(``model.kwargs.cond_dim=1``): 7/8 of each batch flow matching at d = 1/128, 1/8 self-consistency
at d = 2^-k from the EMA parameters (train.distill.shortcut), velocities clipped to +-4 as in the
reference. Sampled by Euler with d = 1/steps, steps in 1, 2, 4, ..., 128.

Measured on 2 CPU cores shared with other jobs: 4000 steps in 101 s (load average ~3).
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "train"  # trained from data: mode=train runs the shortcut objective as mode=distill would
    c.data.name = "digits"
    c.schedule.name = "flow"  # x_t = (1 - t) x0 + t eps
    c.predicts = "velocity"
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=512, depth=4, time_embedding="fourier", embed_dim=128, fourier_scale=1.0,
                          cond_dim=1)
    c.distill.method = "shortcut"
    c.distill.teacher = ""
    c.distill.kwargs = dict(bootstrap_fraction=0.125, clip=4.0)
    c.train.num_steps = 4000
    c.train.batch_size = 256
    c.train.lr = 1e-3
    c.train.warmup_steps = 200
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sampler.name = ("shortcut",)
    c.sampler.nfe = (1, 2, 4, 8)
    c.sampler.num_samples = 100
    c.eval.num_samples = 1000
    c.eval.metrics = ("swd", "mmd2")
    return c

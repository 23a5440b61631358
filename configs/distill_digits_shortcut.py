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
from configs.distill_digits_cd import student_of_digits


def get_config():
    c = student_of_digits()  # the digits network, batch, optimiser and evaluation sizes of configs/digits.py
    c.mode = "train"  # trained from data: mode=train runs the shortcut objective as mode=distill would
    c.schedule.name = "flow"  # x_t = (1 - t) x0 + t eps
    c.predicts = "velocity"
    c.model.kwargs.cond_dim = 1
    c.distill.method = "shortcut"
    c.distill.teacher = ""
    c.distill.kwargs = dict(bootstrap_fraction=0.125, clip=4.0)
    c.train.num_steps = 4000
    c.train.lr = 1e-3
    c.sampler.name = ("shortcut",)
    c.sampler.nfe = (1, 2, 4, 8)
    return c

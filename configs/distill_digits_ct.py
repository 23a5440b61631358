"""Consistency training (Song et al. 2023; no teacher) of a digits consistency model.

    python launch.py --config=configs/distill_digits_ct.py                        # mode=distill, from data
    python launch.py --config=configs/distill_digits_ct.py --config.mode=sample   # 1, 2, 4, 8-step samples
    python launch.py --config=configs/distill_digits_ct.py --config.mode=eval

configs/distill_digits_cd.py without a teacher: x_{j+1} = alpha x0 + sigma z with the same z,
the target an EMA of the student with the curricula N(k) (s0 = 2 -> s1 = 150 points) and mu(k)
(mu0 = 0.9) of the paper over ``train.num_steps``.

Measured on 2 CPU cores shared with other jobs: 4000 steps in 724 s (load average ~15:
three trainings at once beside other jobs; an unloaded run is a few times faster).
"""
from configs import distill_digits_cd


def get_config():
    return distill_digits_cd.without_teacher("ct", dict(s0=2, s1=150, mu0=0.9, sigma_data=0.75))

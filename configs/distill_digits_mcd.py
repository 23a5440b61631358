"""Multistep consistency distillation (Heek et al. 2024) of the digits teacher of ``make run``.

    make run                                                                      # the teacher: workdir/digits
    python launch.py --config=configs/distill_digits_mcd.py                       # mode=distill
    python launch.py --config=configs/distill_digits_mcd.py --config.mode=sample  # 2, 4, 8 DDIM steps
    python launch.py --config=configs/distill_digits_mcd.py --config.mode=eval

configs/distill_digits_cd.py with the 16 Heun steps of a 17-point Karras grid cut into 2 segments
(``distill.kwargs.segments``): the student's x0 is trained so that one DDIM jump lands on its
segment's end, so it is sampled by DDIM on the Karras grid (``sampler.spacing="karras"``) with
NFE = 2 (one jump per segment) or a multiple of it (the 4- and 8-step Karras grids nest the
segment ends). 1 segment would be CD itself. It keeps sigma_data = 0.5 and lr = 1e-3 (the run
measured in bench/distill.py; CD's 0.75 / 2e-3 was not tried here).

Measured on 2 CPU cores shared with other jobs: 4000 steps in 74 s (load average ~3).
"""
from configs import distill_digits_cd

SEGMENTS = 2


def get_config():
    c = distill_digits_cd.get_config()
    c.distill.kwargs = dict(num_points=17, solver="heun", target_decay=0.95, sigma_data=0.5, segments=SEGMENTS)
    c.train.lr = 1e-3
    c.sampler.name = ("ddim",)
    c.sampler.spacing = "karras"
    c.sampler.nfe = (2, 4, 8)
    return c

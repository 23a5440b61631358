"""Consistency distillation (Song et al. 2023) of the digits teacher of ``make run`` (configs/digits.py).

    make run                                                                      # the teacher: workdir/digits
    python launch.py --config=configs/distill_digits_cd.py                        # mode=distill
    python launch.py --config=configs/distill_digits_cd.py --config.mode=sample   # 1, 2, 4, 8-step samples
    python launch.py --config=configs/distill_digits_cd.py --config.mode=eval     # sliced W2 / MMD table

The teacher is the trained workdir of ``make run`` (``distill.teacher="workdir/digits"``: its
EMA network, an EDM-preconditioned x0 predictor on the vp_linear schedule); each CD step takes one
Heun step of it on an 18-point Karras grid (in s = sigma / alpha). The student is a consistency
function f(x, t) -> x0 with the skip/out parameterisation (train.distill.consistency), an MLP of
the teacher's size trained from scratch, sampled by the multistep consistency sampler;
sigma_data = 0.75 is the digits' pixel standard deviation (0.751).

Measured on 2 CPU cores shared with other jobs: 4000 steps in 108 s (load average ~3) to 461 s
(load average ~10); the teacher's `make run` training (3500 steps) took 48 s. bench/distill.py
compares the student with the teacher's own solvers.
"""
from configs import digits
from train.config import defaults

TEACHER = "workdir/digits"  # the workdir of `make run` (launch.py's default for configs/digits.py)


def student_of_digits():
    """configs/digits.py (its data, schedule, prediction, network, batch, optimiser and evaluation sizes)
    as a ``mode=distill`` config whose loss section is the default one (the method's objective is the loss)."""
    c = digits.get_config()
    c.mode = "distill"
    c.train.loss = defaults().train.loss
    return c


def get_config():
    c = student_of_digits()  # the consistency function f(x, t) predicts x0 on the teacher's vp_linear schedule
    c.distill.method = "cd"
    c.distill.teacher = TEACHER
    c.distill.kwargs = dict(num_points=18, solver="heun", target_decay=0.95, sigma_data=0.75)
    c.train.num_steps = 4000
    c.train.lr = 2e-3
    c.sampler.name = ("consistency",)
    c.sampler.nfe = (1, 2, 4, 8)
    return c


def without_teacher(method: str, kwargs: dict):
    """This config trained from data alone (consistency training: ``method`` "ct" / "ict" with ``kwargs``)."""
    c = get_config()
    c.distill.method = method
    c.distill.teacher = ""
    c.distill.kwargs = kwargs
    return c

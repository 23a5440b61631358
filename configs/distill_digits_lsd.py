"""LSD+ (Fu et al. 2025) of the digits teacher of ``make run`` (configs/digits.py).

    make run                                                                       # the teacher: workdir/digits
    python launch.py --config=configs/distill_digits_lsd.py                        # mode=distill
    python launch.py --config=configs/distill_digits_lsd.py --config.mode=sample   # the learnt 4-call sampler
    python launch.py --config=configs/distill_digits_lsd.py --config.mode=eval     # sliced W2 / MMD table

The frozen teacher is sampled by DPM-Solver++(2M) with learnt corrections to its coefficient table
(``distill.kwargs.base="dpm_solver_pp_2m"``, initialised at the 2M table) and learnt model times
(log-SNR spacing at the start, ``distill.method="lsd_plus"``; ``"lsd"`` keeps the times); the loss
aligns its 4 intermediates with a 32-sub-step teacher trajectory at the same times, the last step
weighted 10x (``final_weight``). Only the sampler is learnt (the network fields are the teacher's, for
loading it). 200 steps took 111 s (with compilation) on 2 CPU cores shared with other jobs (load average ~6).
"""
from configs import digits
from configs.distill_digits_cd import TEACHER


def get_config():
    c = digits.get_config()
    c.mode = "distill"
    c.distill.method = "lsd_plus"
    c.distill.teacher = TEACHER
    c.distill.kwargs = dict(nfe=4, spacing="logsnr", teacher_substeps=32, base="dpm_solver_pp_2m",
                            final_weight=10.0)
    c.train.num_steps = 200
    c.train.batch_size = 64
    c.train.lr = 2e-2
    c.train.warmup_steps = 0
    c.train.ema_decay = 0.0
    c.train.log_every = 20
    c.train.checkpoint_every = 200
    c.sampler.name = ("lsd",)
    c.sampler.nfe = (4,)
    return c

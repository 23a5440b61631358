"""LSD+ (Fu et al. 2025) of the digits teacher of ``make run`` (configs/digits.py).

    make run                                                                       # the teacher: workdir/digits
    python launch.py --config=configs/distill_digits_lsd.py                        # mode=distill
    python launch.py --config=configs/distill_digits_lsd.py --config.mode=sample   # the learnt 4-call sampler
    python launch.py --config=configs/distill_digits_lsd.py --config.mode=eval     # sliced W2 / MMD table

The frozen teacher is sampled by DDIM's eps step with one learnt coefficient per step and learnt
model times (log-SNR spacing at the start, ``distill.method="lsd_plus"``; ``"lsd"`` keeps the
times); the loss aligns its 4 intermediates with a 32-sub-step teacher trajectory at the same times.
Only the sampler is learnt (the network fields are the teacher's, for loading it).
"""
from configs import digits
from configs.distill_digits_cd import TEACHER


def get_config():
    c = digits.get_config()
    c.mode = "distill"
    c.distill.method = "lsd_plus"
    c.distill.teacher = TEACHER
    c.distill.kwargs = dict(nfe=4, spacing="logsnr", teacher_substeps=32)
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

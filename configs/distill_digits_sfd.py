"""SFD (Zhou et al. 2024) of the digits teacher of ``make run`` (configs/digits.py).

    make run                                                                       # the teacher: workdir/digits
    python launch.py --config=configs/distill_digits_sfd.py                        # mode=distill
    python launch.py --config=configs/distill_digits_sfd.py --config.mode=sample   # 2-call samples
    python launch.py --config=configs/distill_digits_sfd.py --config.mode=eval     # sliced W2 / MMD table

The student starts as a copy of the teacher (same network and EDM preconditioning,
``init_from_teacher``) and is fine-tuned so that one Euler step per interval of a 3-step polynomial
(rho = 7) grid, the first step analytical, lands on the teacher's DPM-Solver++(3M) trajectory with 3
extra points per interval: 2 model calls. SFD-v (several budgets) needs a budget-conditioned network
(``model.kwargs.cond_dim=1``), which the teacher's copy is not.
"""
from configs import digits
from configs.distill_digits_cd import TEACHER


def get_config():
    c = digits.get_config()  # the teacher's network, schedule and preconditioning
    c.mode = "distill"
    c.distill.method = "sfd"
    c.distill.teacher = TEACHER
    c.distill.kwargs = dict(nfe=2, extra_points=3, solver="dpm_solver_pp_3m", afs=True, init_from_teacher=True)
    c.train.num_steps = 1000
    c.train.lr = 2e-4  # fine-tuning
    c.train.warmup_steps = 50
    c.train.checkpoint_every = 500
    c.sampler.name = ("sfd",)
    c.sampler.spacing = "karras"
    c.sampler.nfe = (2,)
    return c

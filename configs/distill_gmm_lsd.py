"""LSD / LSD+ (Fu et al. 2025) on the exact 2-D Gaussian mixture of configs/distill_gmm_cd.py.

    python launch.py --config=configs/distill_gmm_lsd.py                       # mode=distill (LSD+)
    python launch.py --config=configs/distill_gmm_lsd.py --config.mode=sample  # the learnt 4-call sampler
    python launch.py --config=configs/distill_gmm_lsd.py --config.mode=eval    # sliced W2, exact log-likelihood

The student is the teacher itself (``distill.teacher="analytic"``: the exact mixture) sampled by
DPM-Solver++(2M) with learnt corrections to its coefficient table (``distill.kwargs.base=
"dpm_solver_pp_2m"``; initialised at 0, i.e. the teacher's own 2M) and, for ``"lsd_plus"``, learnt
times (log-SNR spacing at the start; ``distill.method="lsd"`` keeps them); the loss aligns its 4
intermediates with a 128-step teacher trajectory at the same times, the last step weighted 10x
(``final_weight``). ``base="ddim_eps"`` is the DDIM base (one learnt scale of eps per step). Only the
sampler is learnt (``config.model`` is unused); sample / eval build it from the checkpoint
(``sampler.name="lsd"``). 400 steps took 7 s (with compilation) on 2 shared CPU cores.
"""
from configs.common_distill import gmm


def get_config():
    kwargs = dict(nfe=4, spacing="logsnr", teacher_substeps=32, base="dpm_solver_pp_2m", final_weight=10.0)
    c = gmm("lsd_plus", kwargs, "edm", "x0", "lsd", (4,))
    c.model.kwargs = dict(hidden=16, depth=1)  # unused: the learnt parameters are the sampler's
    c.train.num_steps = 400
    c.train.lr = 2e-2
    c.train.ema_decay = 0.0
    c.train.log_every = 50
    c.train.checkpoint_every = 400
    return c

"""SFD-v (Zhou et al. 2024) of the exact 2-D Gaussian mixture of configs/distill_gmm_cd.py.

    python launch.py --config=configs/distill_gmm_sfd.py                       # mode=distill
    python launch.py --config=configs/distill_gmm_sfd.py --config.mode=sample  # 1-, 2-, 4-call samples
    python launch.py --config=configs/distill_gmm_sfd.py --config.mode=eval    # sliced W2, exact log-likelihood

The teacher is the mixture itself (``distill.teacher="analytic"``), integrated by DPM-Solver++(3M)
with 3 extra polynomial points per coarse interval; one EDM-preconditioned denoiser conditioned on
its budget (``model.kwargs.cond_dim=1``) learns to land on that trajectory with one Euler step per
interval, the first step analytical (sampler ``"sfd"``: NFE + 1 steps). Plain SFD (one budget):
``--config.distill.kwargs.nfe=2 --config.model.kwargs.cond_dim=0 --config.sampler.nfe=2``.
"""
from configs.common_distill import gmm


def get_config():
    c = gmm("sfd", dict(nfe=(1, 2, 4), extra_points=3, solver="dpm_solver_pp_3m", afs=True), "edm", "x0", "sfd",
            (1, 2, 4))
    c.train.loss.precond = "edm"
    c.train.loss.sigma_data = 1.0
    c.model.kwargs.cond_dim = 1  # the budget (SFD-v)
    c.train.num_steps = 3000
    c.train.checkpoint_every = 1000
    c.sampler.spacing = "karras"
    return c

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
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "distill"
    c.data.name = "gmm"
    c.data.kwargs = dict(dim=2, num_components=4, mixture_seed=0, spread=4.0, scale=0.25)  # separated modes
    c.schedule.name = "edm"  # sigma = t in [0.002, 80]
    c.predicts = "x0"
    c.train.loss.precond = "edm"
    c.train.loss.sigma_data = 1.0
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=128, depth=3, time_embedding="fourier", embed_dim=32, fourier_scale=1.0, cond_dim=1)
    c.distill.method = "sfd"
    c.distill.teacher = "analytic"
    c.distill.kwargs = dict(nfe=(1, 2, 4), extra_points=3, solver="dpm_solver_pp_3m", afs=True)
    c.train.num_steps = 3000
    c.train.batch_size = 256
    c.train.lr = 2e-3
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sampler.name = ("sfd",)
    c.sampler.spacing = "karras"
    c.sampler.nfe = (1, 2, 4)
    c.sampler.num_samples = 2000
    c.eval.num_samples = 4000
    c.eval.metrics = ("swd", "log_likelihood")
    return c

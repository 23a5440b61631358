"""A shortcut model (Frans et al. 2024) of the 2-D Gaussian mixture of configs/distill_gmm_cd.py.

    python launch.py --config=configs/distill_gmm_shortcut.py                       # train (~1 min)
    python launch.py --config=configs/distill_gmm_shortcut.py --config.mode=sample  # 1, 2, 4, 8 steps
    python launch.py --config=configs/distill_gmm_shortcut.py --config.mode=eval

One network s(x_t, t, d) on the flow schedule, conditioned on the step size d
(``model.kwargs.cond_dim=1``), sampled with 1, 2, 4, ..., 128 Euler steps of size d = 1/steps.
The flow-matching rows regress the exact mixture's velocity (``distill.teacher="analytic"``);
``--config.distill.teacher=""`` trains from the data alone (``mode=train`` works the same).
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "distill"
    c.data.name = "gmm"
    c.data.kwargs = dict(dim=2, num_components=4, mixture_seed=0, spread=4.0, scale=0.25)
    c.schedule.name = "flow"  # x_t = (1 - t) x0 + t eps
    c.predicts = "velocity"
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=128, depth=3, time_embedding="fourier", embed_dim=32, fourier_scale=1.0, cond_dim=1)
    c.distill.method = "shortcut"
    c.distill.teacher = "analytic"
    c.distill.kwargs = dict(bootstrap_fraction=0.125, clip=0.0)  # no clip: 2-D velocities exceed 4
    c.train.num_steps = 6000
    c.train.batch_size = 256
    c.train.lr = 2e-3
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sampler.name = ("shortcut",)
    c.sampler.nfe = (1, 2, 4, 8)
    c.sampler.num_samples = 2000
    c.eval.num_samples = 4000
    c.eval.metrics = ("swd", "log_likelihood")
    return c

"""Consistency distillation (Song et al. 2023) of an exact 2-D Gaussian mixture (4 well-separated modes).

    python launch.py --config=configs/distill_gmm_cd.py                       # mode=distill (~1 min on 2 CPUs)
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=sample  # 1-, 2-, 4-step samples
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=eval    # sliced W2, exact log-likelihood

The teacher is the mixture itself (``distill.teacher="analytic"``: exact, nothing to train);
each CD step takes one Heun step of it on an 18-point Karras grid of the EDM schedule. Other
methods on the same data: ``--config.distill.method=ct`` or ``ict`` with
``--config.distill.teacher=""`` and ``--config.distill.kwargs='{}'``; multistep consistency:
``--config.distill.kwargs.segments=...`` (a divisor of 17), sampled by ``sampler.name=ddim``
with ``sampler.spacing=karras`` and NFE = segments.
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "distill"
    c.data.name = "gmm"
    c.data.kwargs = dict(dim=2, num_components=4, mixture_seed=0, spread=4.0, scale=0.25)  # separated modes
    c.schedule.name = "edm"  # sigma = t in [0.002, 80]
    c.predicts = "x0"  # the consistency function f(x, t)
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=128, depth=3, time_embedding="fourier", embed_dim=32, fourier_scale=1.0)
    c.distill.method = "cd"
    c.distill.teacher = "analytic"
    c.distill.kwargs = dict(num_points=18, solver="heun", target_decay=0.95, sigma_data=1.0)
    c.train.num_steps = 6000
    c.train.batch_size = 256
    c.train.lr = 2e-3
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sampler.name = ("consistency",)
    c.sampler.nfe = (1, 2, 4)
    c.sampler.num_samples = 2000
    c.eval.num_samples = 4000
    c.eval.metrics = ("swd", "log_likelihood")
    return c

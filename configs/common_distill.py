"""The shared body of the distillation configs on the exact 2-D Gaussian mixture
(configs/distill_gmm_*.py): each config is ``gmm(...)`` plus its differences."""
from train.config import defaults

GMM = dict(dim=2, num_components=4, mixture_seed=0, spread=4.0, scale=0.25)  # 4 well-separated modes
MLP = dict(hidden=128, depth=3, time_embedding="fourier", embed_dim=32, fourier_scale=1.0)


def gmm(method: str, kwargs: dict, schedule: str, predicts: str, sampler: str, nfe: tuple):
    """A ``mode=distill`` config of ``method`` on the mixture with the exact teacher
    (``distill.teacher="analytic"``), a Fourier-time MLP student, 6000 Adam steps (cosine, EMA 0.999),
    sampled by ``sampler`` at ``nfe`` and evaluated by sliced W2 and the exact log-likelihood."""
    c = defaults()
    c.mode = "distill"
    c.data.name = "gmm"
    c.data.kwargs = dict(GMM)
    c.schedule.name = schedule
    c.predicts = predicts
    c.model.name = "mlp"
    c.model.kwargs = dict(MLP)
    c.distill.method = method
    c.distill.teacher = "analytic"
    c.distill.kwargs = kwargs
    c.train.num_steps = 6000
    c.train.batch_size = 256
    c.train.lr = 2e-3
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.sampler.name = (sampler,)
    c.sampler.nfe = nfe
    c.sampler.num_samples = 2000
    c.eval.num_samples = 4000
    c.eval.metrics = ("swd", "log_likelihood")
    return c

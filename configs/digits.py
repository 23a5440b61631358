"""The main job at toy size: a diffusion model of scikit-learn's 8x8 digits, trained on 2 CPU cores in minutes.

    python launch.py --config=configs/digits.py                      # train (resumes if stopped)
    python launch.py --config=configs/digits.py --config.mode=sample # PNG grid + .npz per solver x NFE
    python launch.py --config=configs/digits.py --config.mode=eval   # sliced Wasserstein / MMD table

The pipeline of configs/dpm_cifar.py (VP schedule, EMA, DPM-Solver++ / UniPC sampling) at
toy size: an MLP on the 64 flattened pixels, trained as an EDM-preconditioned denoiser
(Karras et al. 2022: log-normal noise levels, EDM loss weighting, sigma_data = 0.5) on the
VP schedule. bench/digits_quality.py measures that its samples are recognisable digits.
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "train"
    c.data.name = "digits"
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=512, depth=4, time_embedding="fourier", embed_dim=128, fourier_scale=1.0)
    c.schedule.name = "vp_linear"
    c.predicts = "x0"  # the preconditioned denoiser D(x, t)
    c.train.loss.precond = "edm"
    c.train.loss.weighting = "edm"
    c.train.loss.time_sampling = "lognormal"
    c.train.loss.sigma_data = 0.5
    c.train.num_steps = 3500
    c.train.batch_size = 256
    c.train.lr = 3e-3
    c.train.warmup_steps = 200
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sampler.name = ("dpm_solver_pp_3m", "dpm_solver_pp_2m", "unipc", "ddim")
    c.sampler.nfe = (10, 20)
    c.sampler.num_samples = 100
    c.eval.num_samples = 1000
    c.eval.metrics = ("swd", "mmd2")
    return c

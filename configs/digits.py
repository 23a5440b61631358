"""The main job at toy size: a diffusion model of scikit-learn's 8x8 digits, trained on CPU in minutes.

    python launch.py --config=configs/digits.py                      # train (resumes if stopped)
    python launch.py --config=configs/digits.py --config.mode=sample # PNG grids + .npz per solver x NFE
    python launch.py --config=configs/digits.py --config.mode=eval   # sliced Wasserstein / MMD table

Same pipeline as configs/dpm_cifar.py (VP schedule, eps prediction, EMA, DPM-Solver-style
sampling), with an MLP on the 64 flattened pixels.
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "train"
    c.data.name = "digits"
    c.model.name = "mlp"
    c.model.kwargs = dict(hidden=512, depth=4, time_embedding="fourier", embed_dim=128, fourier_scale=4.0)
    c.schedule.name = "vp_linear"
    c.predicts = "eps"
    c.train.num_steps = 6000
    c.train.batch_size = 128
    c.train.lr = 1e-3
    c.train.warmup_steps = 200
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sampler.name = ("ddim", "heun")
    c.sampler.nfe = (10, 20, 50)
    c.sampler.num_samples = 100
    c.eval.num_samples = 1000
    c.eval.metrics = ("swd", "mmd2")
    return c

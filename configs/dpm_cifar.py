"""The full CIFAR-10 recipe: score_sde's DDPM++ cont. (VP) trained by denoising score matching,
sampled with DPM-Solver++ at 10 and 20 model calls, evaluated by FID.

    python launch.py --config=configs/dpm_cifar.py                          # train
    python launch.py --config=configs/dpm_cifar.py --config.mode=sample     # PNG grids + .npz
    python launch.py --config=configs/dpm_cifar.py --config.mode=eval \\
        --config.eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth   # FID table

Data: the python-version archive (cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/)
in ``data.dir`` (``train.data.download_cifar10(dir)`` fetches it on a machine with a network).
Training follows Song et al. (2021), configs/vp/cifar10_ddpmpp_continuous: VP-SDE with
beta in [0.1, 20], eps prediction, batch 128, Adam lr 2e-4 with 5000 warmup steps,
gradient clipping at 1, EMA 0.9999, random horizontal flips, 1.3M steps (their t_min of
1e-5 for training is 1e-3 here, the schedule's range). Sampling follows Lu et al. (2022b):
multistep DPM-Solver++ (2M, 3M) with logSNR spacing from t = 1 to 1e-3. FID (Heusel et al.
2017) on 50,000 samples against the training set, with the pytorch-fid Inception weights.
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "train"
    c.data.name = "cifar10"
    c.data.dir = "data/cifar10"
    c.data.random_flip = True
    c.model.name = "ddpmpp_cifar10"  # models.unet.ddpmpp_cifar10: 4 res blocks/level, ch 128, mult (1,2,2,2)
    c.model.kwargs = dict(dropout=0.1)
    c.schedule.name = "vp_linear"
    c.schedule.kwargs = dict(beta_min=0.1, beta_max=20.0)
    c.predicts = "eps"
    c.train.num_steps = 1_300_000
    c.train.batch_size = 128
    c.train.optimizer = "adam"
    c.train.lr = 2e-4
    c.train.warmup_steps = 5000
    c.train.lr_schedule = "constant"
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.9999
    c.train.ema_warmup = False
    c.train.log_every = 100
    c.train.checkpoint_every = 10_000
    c.train.keep_checkpoints = 3
    c.sampler.name = ("dpm_solver_pp_2m", "dpm_solver_pp_3m")
    c.sampler.nfe = (10, 20)
    c.sampler.spacing = "logsnr"
    c.sampler.num_samples = 64
    c.sampler.batch_size = 1000
    c.eval.num_samples = 50_000
    c.eval.metrics = ("fid",)
    c.eval.inception_weights = "weights/pt_inception-2015-12-05-6726825d.pth"
    return c

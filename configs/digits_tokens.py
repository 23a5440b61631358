"""Masked (absorbing) discrete diffusion of scikit-learn's 8x8 digits as 64 tokens of 17 grey levels, on 2 CPU cores.

    python launch.py --config=configs/digits_tokens.py                      # train (resumes if stopped)
    python launch.py --config=configs/digits_tokens.py --config.mode=sample # PNG grid + .npz per sampler x NFE
    python launch.py --config=configs/digits_tokens.py --config.mode=eval   # classifier confidence / sliced W2

The digits' pixels are the integers 0..16, so 17 levels quantise them exactly (``train.discrete``). A
``token_mlp`` (``models.tokens.TokenMLP``) predicts each position's level from the partly masked image and
t, trained on the MDLM / MD4 masked ELBO (``train.discrete_losses.MaskedELBO``, linear schedule). Samples
start all-masked; every masked sampler of ``samplers.registry.DISCRETE_SAMPLERS`` runs at each NFE
(first-hitting, one token per call, once at NFE 64). ``eval`` scores the samples, dequantised to the
continuous recipe's [-1, 1], by the digits classifier's share of confident labels (bench/digits_quality.py)
and the sliced Wasserstein distance to the held-out digits, as configs/digits.py.
"""
from train.config import defaults


def get_config():
    c = defaults()
    c.mode = "train"
    c.data.name = "digits"
    c.model.name = "token_mlp"
    c.model.kwargs = dict(vocab_size=17, hidden=512, depth=3, embed_dim=16, time_dim=64)
    c.train.loss.kind = "masked_elbo"
    c.train.loss.mask_schedule = "linear"
    c.train.num_steps = 3000
    c.train.batch_size = 256
    c.train.lr = 2e-3
    c.train.warmup_steps = 100
    c.train.lr_schedule = "cosine"
    c.train.ema_decay = 0.999
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    c.sampler.name = ("masked", "masked_confidence", "masked_margin", "pc_sampler", "remdm_cap", "remdm_loop", "remdm_pc",
                      "dfm_euler", "first_hitting")  # every masked-model sampler of the registry
    c.sampler.nfe = (8, 16, 32)
    c.sampler.num_samples = 100
    c.eval.num_samples = 1000
    c.eval.metrics = ("confident", "swd")
    return c

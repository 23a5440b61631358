"""PCM (Picard consistency model, So et al. 2025) of an exact 8-D Gaussian mixture, base sampler DDIM 50.

    python launch.py --config=configs/distill_gmm_pcm.py                       # mode=distill
    python launch.py --config=configs/distill_gmm_pcm.py --config.mode=sample  # the base DDIM's samples
    python launch.py --config=configs/distill_gmm_pcm.py --config.mode=eval    # sliced W2, exact log-likelihood

The teacher is the mixture itself (``distill.teacher="analytic"``); the student is the teacher plus a
Fourier-time MLP residual (last layer zero at the start) trained so that one Picard update with it, over
the whole 50-step DDIM trajectory, from the base model's first Picard guess (``rounds=1``: every point
x_T; the paper's K > 1 draws the iterate from the first K) lands on the sequential trajectory
(``train.distill.pcm``); at inference it steps round 0 only (``switch_rounds=1``). Sample / eval run the
base DDIM itself (the answer of the switched parallel run); ``train.distill.pcm.parallel_of`` builds the
time-parallel driver with the PCM switch for ``samplers.parallel.parallel_sample``. 4000 steps took 4 min
on 2 shared CPU cores (bench/distill.py --parts pcm measures the rounds it saves).
"""
from configs.common_distill import gmm

MIXTURE = dict(dim=8, num_components=4, mixture_seed=0, spread=2.0, scale=0.3)


def get_config():
    c = gmm("pcm", dict(sampler="ddim", nfe=50, rounds=1, switch_rounds=1), "vp_linear", "eps", "ddim", (50,))
    c.data.kwargs = dict(MIXTURE)
    c.model.kwargs = dict(hidden=256, depth=3, time_embedding="fourier", embed_dim=32, fourier_scale=16.0)
    c.train.num_steps = 4000
    c.train.batch_size = 64
    c.train.lr = 5e-3
    c.train.checkpoint_every = 1000
    return c

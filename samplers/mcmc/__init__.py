"""MCMC kernels, each a ``Sampler(init, step, num_steps, nfe)`` over a batch of chains
(the leading axis of ``x``); ``sample(kernel, model_fn, x, key, trajectory=lambda s: s.x)``
returns the chains as (num_steps, num_chains, ...).

* On a log-density or score (``target=``): ``ula``, ``mala`` (langevin.py), ``hmc``
  (hmc.py), ``gibbs_polar_slice`` (slice.py), ``rdmc`` (rdmc.py: reverse diffusion Monte
  Carlo); step sizes by dual averaging with ``adapt_step_size`` (adaptation.py).
* On a diffusion model (``predicts=``): ``annealed_langevin`` (annealed.py),
  ``logconcave_chain`` (logconcave_chain.py) and ``denoising_mcmc``
  (denoising_mcmc.py, on normalised log p_t).

Diagnostics (ESS, split R-hat, acceptance rate) live in ``samplers.diagnostics``.
"""
from samplers.mcmc.adaptation import adapt_step_size, dual_averaging_init, dual_averaging_update
from samplers.mcmc.annealed import annealed_langevin
from samplers.mcmc.denoising_mcmc import denoising_mcmc
from samplers.mcmc.hmc import hmc
from samplers.mcmc.langevin import mala, ula
from samplers.mcmc.logconcave_chain import logconcave_chain
from samplers.mcmc.rdmc import rdmc
from samplers.mcmc.slice import gibbs_polar_slice

__all__ = ["adapt_step_size", "annealed_langevin", "denoising_mcmc", "dual_averaging_init", "dual_averaging_update",
           "gibbs_polar_slice", "hmc", "logconcave_chain", "mala", "rdmc", "ula"]

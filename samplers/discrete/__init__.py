"""Discrete diffusion samplers: token ids (B, L) int32, ``model_fn(x, t) -> logits (B, L, V)``.

Shared pieces: ``schedules`` (masking schedules alpha(t)), ``categorical`` (exact draws in a chosen
dtype, temperature / top-p / greedy). Masked (absorbing) samplers use ``mask_id = V`` outside the
vocabulary: ``masked`` (ancestral MDLM / MD4 with caching and confidence / margin / entropy / PC-Sampler orders), ``first_hitting``,
``remask`` (ReMDM, with its predictor-corrector), ``block`` (block diffusion); exact targets live in ``models/discrete.py``.
Uniform noise: ``uniform`` (analytic posterior step, Euler, tau-leaping; the exact uniform-noise
denoiser); ``dfm`` (discrete flow matching Euler, mask or uniform source); ``posterior`` (split Gibbs
posterior sampling with a masked prior) and ``aps`` (anchored posterior sampling).
"""

"""Sequential Monte Carlo and inference-time scaling on the stochastic samplers' Gaussian transitions
(``Sampler.transition``): ``resampling`` (multinomial, stratified, systematic, residual, ESS),
``search`` (best-of-N, SVDD, beam and tree search), ``flow_sde`` (marginal-preserving SDE of a flow
model, rollover budget forcing), ``inverse`` (DPS and exact-posterior SMC for linear inverse
problems), ``cfg_pc`` (classifier-free guidance as predictor-corrector)."""

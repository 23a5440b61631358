"""Sequential Monte Carlo and inference-time scaling on the stochastic samplers' Gaussian transitions
(``Sampler.transition``): ``engine`` (the SMC sampler: particles, ``Potential`` weights, adaptive
resampling, log-Z), ``fk`` (Feynman-Kac correctors: annealing, product of experts, CFG target; reward
tilting), ``resampling`` (multinomial, stratified, systematic, residual, ESS),
``search`` (best-of-N, SVDD, beam and tree search), ``flow_sde`` (marginal-preserving SDE of a flow
model, rollover budget forcing), ``inverse`` (DPS and exact-posterior SMC for linear inverse
problems), ``cfg_pc`` (classifier-free guidance as predictor-corrector), ``tds`` (the twisted diffusion sampler, a
potential of the engine), ``sharding`` (particles sharded over a mesh's data axis, resampling global),
``path`` (SMC along a path of exact log-densities, e.g. a product of experts' noised marginals, with
AIS weights and MALA / HMC moves)."""

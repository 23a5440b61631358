"""Sample an analytic Gaussian mixture with one solver, and tabulate every solver's error.

    python launch.py --config=configs/gmm.py
    python launch.py --config=configs/gmm.py --config.sampler.name=heun --config.sampler.nfe=8
    python launch.py --config=configs/gmm.py --config.table.solvers='("ddim","heun")' --config.table.nfes='(5,10)'

The model is exact (``models.analytic.random_mixture``), so the RMS error against the
exact probability-flow ODE solution and the exact log-likelihood of the samples are numbers.
"""
from ml_collections import ConfigDict, config_dict


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.mode = "sample"
    c.seed = 0
    c.batch_size = 2000

    # models.analytic.random_mixture(dim, num_components, seed, spread, scale)
    c.gmm = ConfigDict(dict(dim=2, num_components=4, seed=0, spread=2.0, scale=0.3))
    # samplers.schedules.get_schedule(name, **kwargs): only the name here, the schedule's defaults otherwise
    c.schedule = "vp_linear"
    # the model's parameterisation: one of samplers.param.PREDICTIONS
    c.predicts = "eps"

    # the solver whose samples are plotted (samplers.registry.build arguments)
    c.sampler = ConfigDict()
    c.sampler.name = "dpm_solver_pp_2m"
    c.sampler.nfe = 10
    c.sampler.spacing = config_dict.placeholder(str)  # None: the solver's default spacing
    c.sampler.final = config_dict.placeholder(str)  # None | "zero" | "last"

    # the solver x NFE table (same spacing/final as the sampler); cells a solver cannot be built for
    # (too few calls for its stages, an incompatible final point) are shown as "-"
    c.table = ConfigDict()
    # (every registered solver: tuple(registry.names()); the default keeps the run under a minute)
    c.table.solvers = ("ddim", "euler", "heun", "dpm_solver_fast", "dpm_solver_pp_2m",
                       "dpm_solver_pp_3m", "unipc", "unipc_3", "deis_3", "rk_rk4")
    c.table.nfes = (5, 10, 20, 40)
    # tolerance of the float64 adaptive reference solve
    c.reference_tol = 1e-9
    return c

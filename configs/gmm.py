"""Sample an analytic Gaussian mixture with each solver x NFE of ``sampler``, and tabulate every solver's error.

    python launch.py --config=configs/gmm.py
    python launch.py --config=configs/gmm.py --config.sampler.name=heun --config.sampler.nfe=8
    python launch.py --config=configs/gmm.py --config.table.solvers='("ddim","heun")' --config.table.nfes='(5,10)'

The model is exact (``models.analytic.random_mixture``), so the RMS error against the
exact probability-flow ODE solution and the exact log-likelihood of the samples are numbers.
The fields it shares with the train configs (``seed``, ``schedule``, ``predicts``, ``data``,
``sampler``) have the meaning of ``train.config.defaults()``; ``table`` and ``reference_tol``
are its own, and a ``table`` section is what makes ``launch.py`` run this analytic job.
"""
from ml_collections import ConfigDict, config_dict


def get_config() -> ConfigDict:
    c = ConfigDict()
    c.mode = "sample"
    c.seed = 0  # the start noise of every solver and of the reference solve

    # samplers.schedules.get_schedule(name, **kwargs)
    c.schedule = ConfigDict({"name": "vp_linear", "kwargs": ConfigDict()})
    # the model's parameterisation: one of samplers.param.PREDICTIONS
    c.predicts = "eps"
    # train.data's gmm data set: the mixture models.analytic.random_mixture(dim, num_components, seed=mixture_seed,
    # spread, scale); its exact draws (n, default sampler.num_samples; numpy seed, default 0) are the plotted data
    c.data = ConfigDict({"name": "gmm", "kwargs": ConfigDict(
        dict(dim=2, num_components=4, mixture_seed=0, spread=2.0, scale=0.3))})

    # every (name, NFE) pair is sampled and plotted (samplers.registry.build arguments); one value or a tuple
    c.sampler = ConfigDict()
    c.sampler.name = ("dpm_solver_pp_2m",)
    c.sampler.nfe = (10,)
    c.sampler.spacing = config_dict.placeholder(str)  # None: the solver's default spacing
    c.sampler.final = config_dict.placeholder(str)  # None | "zero" | "last"
    c.sampler.num_samples = 2000

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

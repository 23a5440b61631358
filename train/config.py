"""The config schema of the train / sample / eval jobs, its defaults, and up-front validation.

``defaults()`` is the whole schema: every field a job reads, with its default.
``resolve(config)`` fills the fields a config file leaves out; ``validate(config)``
raises ``ValueError`` naming the field for an unknown field or a bad value (it
builds the schedule, objective, optimiser, network shapes and every requested
sampler, so nothing fails later for a reason visible now). Free-form sections
(``model.kwargs``, ``schedule.kwargs``, ``data.kwargs``) are checked by building
what they configure. ``check_schedule``, ``check_sampler``, ``check_gmm_kwargs`` and the
``check_int``/``check_float``/``check_bool`` helpers also check the analytic configs of
``launch.py`` (configs/gmm.py), whose shared sections mean the same.

Sections: ``mode``, ``seed``, ``model {name, kwargs}``, ``schedule {name, kwargs}``,
``predicts``, ``sampler {name, nfe, spacing, final, num_samples, batch_size,
use_ema}`` (``name``/``nfe``: one value or a tuple; every pair is run),
``data {name, kwargs, dir, random_flip}``, ``train {... , loss {...}}``,
``eval {num_samples, metrics, inception_weights, swd_projections}``.
"""
from __future__ import annotations

import copy
import os

import numpy as np
from ml_collections import ConfigDict, config_dict

from samplers import registry
from samplers.checks import check_int, check_number
from samplers.grids import FINALS, SPACINGS
from samplers.ode.common import check_choice
from samplers.param import check_prediction
from samplers.schedules import SCHEDULES, Schedule, get_schedule
from train import data as data_lib
from train import discrete as discrete_lib
from train.losses import Objective, objective_from_config
from train.nets import Network, build_network as network_from_name
from train.optim import make_optimizer

MODES = ("train", "sample", "eval", "distill")
METRICS = ("swd", "mmd2", "fid", "log_likelihood", "confident")  # confident: digits classifier, train.jobs
FREE_FORM = ("model.kwargs", "schedule.kwargs", "data.kwargs", "distill.kwargs")


def defaults() -> ConfigDict:
    """The full schema with default values (the digits recipe at toy size)."""
    c = ConfigDict()
    c.mode = "train"
    c.seed = 0
    c.model = ConfigDict({"name": "mlp", "kwargs": ConfigDict()})
    c.schedule = ConfigDict({"name": "vp_linear", "kwargs": ConfigDict()})
    c.predicts = "eps"

    c.sampler = ConfigDict()
    c.sampler.name = ("ddim",)  # registry names (a bare string is taken as one)
    c.sampler.nfe = (20,)  # model-call budgets (a bare int is taken as one)
    c.sampler.spacing = config_dict.placeholder(str)  # None: each solver's default
    c.sampler.final = config_dict.placeholder(str)  # None | "zero" | "last"
    c.sampler.num_samples = 64  # images written by `sample`
    c.sampler.batch_size = 512  # samples generated per call (sample and eval)
    c.sampler.use_ema = True

    c.data = ConfigDict()
    c.data.name = "digits"
    c.data.kwargs = ConfigDict()  # e.g. n, seed, dim, num_components, mixture_seed for gmm
    c.data.dir = "data"  # where cifar10 lives (archive or extracted folder)
    c.data.random_flip = False

    c.train = ConfigDict()
    c.train.num_steps = 2000
    c.train.batch_size = 128  # global, over every device of every process
    c.train.optimizer = "adam"
    c.train.lr = 1e-3
    c.train.b1 = 0.9
    c.train.b2 = 0.999
    c.train.eps = 1e-8
    c.train.weight_decay = 0.0
    c.train.warmup_steps = 0
    c.train.lr_schedule = "constant"
    c.train.grad_clip = 1.0  # global-norm clip; 0 = none
    c.train.ema_decay = 0.999
    c.train.ema_warmup = True
    c.train.log_every = 50
    c.train.checkpoint_every = 1000
    c.train.keep_checkpoints = 3
    c.train.loss = ConfigDict()
    c.train.loss.kind = "denoising"  # | "masked_elbo" | "uniform_elbo": discrete diffusion of a token network
    c.train.loss.mask_schedule = "linear"  # alpha(t) of the discrete kinds and their samplers (train.discrete)
    c.train.loss.time_sampling = "uniform"  # | "lognormal"
    c.train.loss.t_lo = config_dict.placeholder(float)  # None: the schedule's t_min
    c.train.loss.t_hi = config_dict.placeholder(float)  # None: the schedule's t_max
    c.train.loss.p_mean = -1.2
    c.train.loss.p_std = 1.2
    c.train.loss.weighting = "none"  # | "edm"
    c.train.loss.precond = "none"  # | "edm"
    c.train.loss.sigma_data = 0.5
    c.train.loss.input_perturbation = 0.0  # Ning et al. 2023 gamma; 0 = off

    c.eval = ConfigDict()
    c.eval.num_samples = 1000
    c.eval.metrics = ("swd", "mmd2")
    c.eval.inception_weights = ""  # pt_inception-2015-12-05 .pth file (or its directory); needed by "fid"
    c.eval.swd_projections = 512

    # distillation / few-step trainers (train.distill): mode=distill trains the student of ``method``
    c.distill = ConfigDict()
    c.distill.method = ""  # "": none; else one of train.distill.METHODS
    c.distill.teacher = ""  # "analytic" (the exact gmm mixture) | the workdir of a train run | "" (none)
    c.distill.teacher_ema = True  # a workdir teacher's EMA parameters
    c.distill.kwargs = ConfigDict()  # the method's hyper-parameters
    return c


# -- merging and unknown fields -------------------------------------------------------------------

def _as_dict(config) -> dict:
    return config.to_dict() if isinstance(config, ConfigDict) else dict(config)


def _merge(base: dict, over: dict, path: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            if path in FREE_FORM:
                out[key] = value
                continue
            raise ValueError(f"unknown config field {where!r}; fields here are {sorted(base)}")
        if isinstance(base[key], dict) and where not in FREE_FORM:
            if not isinstance(value, dict):
                raise ValueError(f"config field {where!r} must be a section with fields {sorted(base[key])}")
            out[key] = _merge(base[key], value, where)
        else:
            out[key] = value
    return out


def resolve(config) -> ConfigDict:
    """``config`` with every field it leaves out taken from ``defaults()``; unknown fields are a ValueError.

    ``schedule`` may also be given as a bare name and ``model`` likewise.
    """
    user = _as_dict(config)
    for section in ("schedule", "model"):
        if isinstance(user.get(section), str):
            user[section] = {"name": user[section], "kwargs": {}}
    return ConfigDict(_merge(defaults().to_dict(), user, ""))


# -- value checks ------------------------------------------------------------------------------------

def check_bool(name: str, value) -> bool:
    """``value`` as a bool; a ValueError naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def solvers(config) -> list[tuple[str, int]]:
    """Every (sampler name, NFE) pair the config asks for (a discrete config's fixed-NFE samplers once, at
    their own NFE: ``train.discrete.solver_pairs``)."""
    pairs = [(n, int(f)) for n in as_tuple(config.sampler.name) for f in as_tuple(config.sampler.nfe)]
    return discrete_lib.solver_pairs(pairs, event_shape(config)) if discrete_lib.is_discrete(config) else pairs


def build_schedule(config) -> Schedule:
    try:
        return get_schedule(config.schedule.name, **dict(config.schedule.kwargs))
    except TypeError as err:
        raise ValueError(f"schedule.kwargs do not fit schedule {config.schedule.name!r}: {err}") from err


def event_shape(config) -> tuple[int, ...]:
    """The shape of one example of ``config.data`` (without loading CIFAR-10)."""
    name, kw = config.data.name, dict(config.data.kwargs)
    if name == "cifar10":
        return (32, 32, 3)
    if name == "digits":
        return (8, 8, 1)
    if name == "gmm":
        return (int(kw.get("dim", 2)),)
    return (2,)


def build_network(config) -> Network:
    """The network of ``config.model`` for ``config.data``; a ValueError if the kwargs do not fit the data."""
    net = network_from_name(config.model.name, dict(config.model.kwargs), event_shape(config))
    try:
        net.param_shapes()
    except (ValueError, TypeError) as err:
        raise ValueError(f"model {config.model.name!r} with kwargs {dict(config.model.kwargs)} does not fit data "
                         f"of shape {event_shape(config)}: {err}") from err
    return net


def build_objective(config, schedule: Schedule | None = None) -> Objective:
    return objective_from_config(schedule or build_schedule(config), config.predicts, config.train.loss)


def check_gmm_kwargs(kwargs) -> None:
    """The numbers of a ``gmm`` ``data.kwargs`` (``train.data.gmm_data``: ``n``, ``seed``; the mixture's
    ``dim``, ``num_components``, ``mixture_seed``, ``spread``, ``scale``): a ValueError naming the bad one."""
    kw = dict(kwargs)
    for name, minimum in (("n", 1), ("dim", 1), ("num_components", 1), ("seed", 0), ("mixture_seed", 0)):
        if name in kw:
            check_int(f"data.kwargs.{name}", kw[name], minimum)
    for name in ("spread", "scale"):
        if name in kw:
            check_number(f"data.kwargs.{name}", kw[name], 0.0, open_lo=True)


def check_schedule(config) -> Schedule:
    """The schedule of ``config.schedule {name, kwargs}``; a ValueError for an unknown name or unfit kwargs."""
    check_choice("schedule.name", config.schedule.name, sorted(SCHEDULES))
    return build_schedule(config)


def check_sampler(config, schedule: Schedule) -> None:
    """Check ``config.sampler {name, nfe, spacing, final, num_samples}`` and build every (name, NFE) pair for
    ``schedule`` and ``config.predicts`` (so a budget too small for a solver's stages fails here)."""
    s = config.sampler
    if not as_tuple(s.name) or not as_tuple(s.nfe):
        raise ValueError("sampler.name and sampler.nfe must each give at least one value")
    for name in as_tuple(s.name):
        check_choice("sampler.name", name, registry.names(model_specific=True))
    for nfe in as_tuple(s.nfe):
        check_int("sampler.nfe", nfe)
    check_choice("sampler.spacing", s.spacing, (None,) + SPACINGS)
    check_choice("sampler.final", s.final, FINALS)
    check_int("sampler.num_samples", s.num_samples)
    for name, nfe in solvers(config):
        registry.build(name, schedule, nfe, config.predicts, spacing=s.spacing, final=s.final)


def validate(config) -> ConfigDict:
    """The resolved ``config`` after checking every field; a ValueError names the first bad one."""
    config = resolve(config)
    check_choice("mode", config.mode, MODES)
    check_int("seed", config.seed, 0)
    schedule = check_schedule(config)
    check_prediction(config.predicts)

    d = config.data
    check_choice("data.name", d.name, data_lib.DATASETS)
    check_bool("data.random_flip", d.random_flip)
    if d.name == "gmm":
        check_gmm_kwargs(d.kwargs)
    if d.name not in ("cifar10", "digits"):
        try:
            data_lib.load(d.name, "train", **{**dict(d.kwargs), "n": 2})
        except TypeError as err:
            raise ValueError(f"data.kwargs do not fit data set {d.name!r}: {err}") from err
    if d.random_flip and d.name not in ("cifar10", "digits"):
        raise ValueError(f"data.random_flip needs image data, got data.name={d.name!r}")
    if d.name == "cifar10" and config.mode in ("train", "eval"):
        if not (os.path.isfile(os.path.join(d.dir, data_lib.CIFAR10_ARCHIVE))
                or os.path.isdir(os.path.join(d.dir, data_lib.CIFAR10_FOLDER))):
            raise ValueError(str(data_lib.missing_cifar_error(d.dir)))

    network = build_network(config)

    t = config.train
    for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
        check_int(f"train.{name}", t[name])
    check_int("train.warmup_steps", t.warmup_steps, 0)
    if t.warmup_steps > t.num_steps:
        raise ValueError(f"train.warmup_steps must lie in [0, train.num_steps={t.num_steps}], got {t.warmup_steps!r}")
    if t.keep_checkpoints is not None:
        check_int("train.keep_checkpoints", t.keep_checkpoints)
    check_number("train.lr", t.lr, 0.0, open_lo=True)
    check_number("train.b1", t.b1, 0.0, 1.0)
    check_number("train.b2", t.b2, 0.0, 1.0)
    check_number("train.eps", t.eps, 0.0, open_lo=True)
    check_number("train.weight_decay", t.weight_decay, 0.0)
    check_number("train.grad_clip", t.grad_clip, 0.0)
    check_number("train.ema_decay", t.ema_decay, 0.0, 1.0)
    if t.ema_decay >= 1.0:
        raise ValueError(f"train.ema_decay must be < 1, got {t.ema_decay!r}")
    check_bool("train.ema_warmup", t.ema_warmup)
    make_optimizer(t)
    build_objective(config, schedule)

    discrete_lib.check(config, network)  # train.loss.kind; a discrete model's network, data and samplers
    if not discrete_lib.is_discrete(config):
        check_sampler(config, schedule)
    s = config.sampler
    check_int("sampler.batch_size", s.batch_size)
    check_bool("sampler.use_ema", s.use_ema)

    e = config.eval
    check_int("eval.num_samples", e.num_samples, 2)
    check_int("eval.swd_projections", e.swd_projections)
    for m in as_tuple(e.metrics):
        check_choice("eval.metrics", m, METRICS)
    if "fid" in as_tuple(e.metrics):
        if d.name != "cifar10":
            raise ValueError(f"eval.metrics 'fid' needs data.name='cifar10', got {d.name!r}")
    if "fid" in as_tuple(e.metrics) and config.mode == "eval":
        from models.inception import FID_WEIGHTS_URL

        if not e.inception_weights or not os.path.exists(e.inception_weights):
            raise ValueError(f"eval.metrics 'fid' needs eval.inception_weights, the path of pytorch-fid's Inception "
                             f"weights (or their directory); nothing at {e.inception_weights!r}. Download them from "
                             f"{FID_WEIGHTS_URL}")
    if config.mode == "distill" and not config.distill.method:
        raise ValueError("mode='distill' needs distill.method (one of train.distill.METHODS)")
    if config.distill.method:
        from train import distill

        distill.check(config)
    if "confident" in as_tuple(e.metrics) and d.name != "digits":
        raise ValueError(f"eval.metrics 'confident' (the digits classifier) needs data.name='digits', got {d.name!r}")
    if "log_likelihood" in as_tuple(e.metrics) and d.name != "gmm":
        raise ValueError(f"eval.metrics 'log_likelihood' is exact for data.name='gmm' only, got {d.name!r}")
    return config

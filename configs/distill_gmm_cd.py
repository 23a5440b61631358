"""Consistency distillation (Song et al. 2023) of an exact 2-D Gaussian mixture (4 well-separated modes).

    python launch.py --config=configs/distill_gmm_cd.py                       # mode=distill (~1 min on 2 CPUs)
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=sample  # 1-, 2-, 4-step samples
    python launch.py --config=configs/distill_gmm_cd.py --config.mode=eval    # sliced W2, exact log-likelihood

The teacher is the mixture itself (``distill.teacher="analytic"``: exact, nothing to train);
each CD step takes one Heun step of it on an 18-point Karras grid of the EDM schedule. Other
methods on the same data: ``--config.distill.method=ct`` or ``ict`` with
``--config.distill.teacher=""`` and ``--config.distill.kwargs='{}'``; multistep consistency:
``--config.distill.kwargs.segments=...`` (a divisor of 17), sampled by ``sampler.name=ddim``
with ``sampler.spacing=karras`` and NFE = segments.
"""
from configs.common_distill import gmm


def get_config():
    # EDM: sigma = t in [0.002, 80]; x0 prediction is the consistency function f(x, t)
    return gmm("cd", dict(num_points=18, solver="heun", target_decay=0.95, sigma_data=1.0), "edm", "x0",
               "consistency", (1, 2, 4))

"""A shortcut model (Frans et al. 2024) of the 2-D Gaussian mixture of configs/distill_gmm_cd.py.

    python launch.py --config=configs/distill_gmm_shortcut.py                       # train (~1 min)
    python launch.py --config=configs/distill_gmm_shortcut.py --config.mode=sample  # 1, 2, 4, 8 steps
    python launch.py --config=configs/distill_gmm_shortcut.py --config.mode=eval

One network s(x_t, t, d) on the flow schedule, conditioned on the step size d
(``model.kwargs.cond_dim=1``), sampled with 1, 2, 4, ..., 128 Euler steps of size d = 1/steps.
The flow-matching rows regress the exact mixture's velocity (``distill.teacher="analytic"``);
``--config.distill.teacher=""`` trains from the data alone (``mode=train`` works the same).
"""
from configs.common_distill import gmm


def get_config():
    # flow: x_t = (1 - t) x0 + t eps; no clip: 2-D velocities exceed 4
    c = gmm("shortcut", dict(bootstrap_fraction=0.125, clip=0.0), "flow", "velocity", "shortcut", (1, 2, 4, 8))
    c.model.kwargs.cond_dim = 1  # the step size d
    return c

"""CFG as predictor-corrector (samplers/smc/cfg_pc.py) against the closed-form Gaussian target
p(x|c)^g p(x)^(1-g), precision g/vc + (1-g)/v, and plain CFG-DDIM's counterexample."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.analytic import GaussianMixture
from samplers import schedules
from samplers.core import sample
from samplers.grids import time_grid
from samplers.ode.ddim import ddim
from samplers.param import classifier_free_guidance
from samplers.smc.cfg_pc import cfg_pc

SCHED = schedules.vp_linear()
MC, VC, M, V, G = 1.0, 0.5, 0.0, 1.0, 3.0
PREC = G / VC + (1 - G) / V
T_VAR, T_MEAN = 1 / PREC, (G * MC / VC + (1 - G) * M / V) / PREC  # 0.25, 1.5
GRID = time_grid(SCHED, 30, "uniform")
N = 4000
X_T = jax.random.normal(jax.random.PRNGKey(0), (N, 1))


def _model(vc):
    c = GaussianMixture([1.0], [[MC]], [[vc]]).model_fn(SCHED, "eps")
    u = GaussianMixture([1.0], [[M]], [[V]]).model_fn(SCHED, "eps")
    return lambda x, t, lab: jnp.where(lab[:, None] == 1, c(x, t), u(x, t))


def _max_z(y):
    """z-scores of the sample mean and variance against the CFG target's."""
    y = np.asarray(y, np.float64)[:, 0]
    return max(abs(y.mean() - T_MEAN) / np.sqrt(T_VAR / N), abs(y.var() - T_VAR) / (T_VAR * np.sqrt(2 / N)))


def test_cfg_pc_samples_the_powered_target():
    pc = cfg_pc(SCHED, GRID, G, 1, 0, corrector_steps=20, step_size=0.01)
    assert _max_z(sample(pc, _model(VC), X_T, jax.random.PRNGKey(1)).x) < 4.0
    # control: a 10% wrong conditional variance is rejected by the same check
    assert _max_z(sample(pc, _model(1.1 * VC), X_T, jax.random.PRNGKey(1)).x) > 4.0
    # the counterexample: plain CFG-DDIM (same model, guidance, start) does not sample the target
    guided = classifier_free_guidance(_model(VC), G, jnp.ones(N, jnp.int32), jnp.zeros(N, jnp.int32))
    assert _max_z(sample(ddim(SCHED, GRID), guided, X_T).x) > 4.0


def test_nfe_and_bad_input():
    pc = cfg_pc(SCHED, GRID, G, 1, 0, corrector_steps=2)
    assert pc.nfe == 30 * (1 + 4) == int(sample(pc, _model(VC), X_T[:3]).nfe)
    with pytest.raises(ValueError, match="corrector_steps"):
        cfg_pc(SCHED, GRID, G, 1, 0, corrector_steps=-1)
    with pytest.raises(ValueError, match="step_size"):
        cfg_pc(SCHED, GRID, G, 1, 0, step_size=0.0)
    with pytest.raises(ValueError, match="guidance"):
        cfg_pc(SCHED, GRID, float("nan"), 1, 0)
    with pytest.raises(ValueError, match="predicts"):
        cfg_pc(SCHED, GRID, G, 1, 0, predicts="noise")

"""LSD for masked diffusion (samplers/discrete/lsd.py, train/distill/lsd_discrete.py) on the exact
product-mixture model: the enumerated state law equals the real sampler's, and learnt coefficients of
DFM's Euler step beat the fixed ones (all 1) in trajectory error to the many-step teacher at 3 NFE."""
import jax
import numpy as np
import pytest

from samplers.discrete.lsd import lsd_sampler, token_law
from tests.discrete_utils import KEY, L, MASK, MIX, V, run_masked, tv
from train.distill.lsd_discrete import MaskedLSD, load_artefact, save_artefact

NFE = 3


@pytest.fixture(scope="module")
def fitted():
    trainer = MaskedLSD(MIX.masked_model_fn(MASK), V, L, NFE, base="dfm")
    return trainer, trainer.fit(steps=150)


def params_of(artefact):
    return {"log_coef": np.log(np.asarray(artefact["coef"][:-1], np.float32)), "u": np.zeros(NFE - 1, np.float32)}


def test_learnt_coefficients_beat_fixed_in_trajectory_error(fitted):
    trainer, artefact = fitted
    fixed, learnt = trainer.loss(trainer.initial_params()), trainer.loss(params_of(artefact))
    bound = 0.05  # sum over the 3 student times of KL(teacher law || student law)
    assert learnt < bound < fixed, (learnt, fixed)  # the fixed coefficients are the control that fails
    assert learnt < 0.5 * fixed
    p = MIX.enumerate()[1]
    final = lambda q: 0.5 * np.abs(np.asarray(token_law(trainer.student_laws(q)[-1], trainer.states, V)) - p).sum()
    assert final(params_of(artefact)) < final(trainer.initial_params())  # and the samples' TV to the target


def test_enumerated_law_is_the_samplers_law(fitted, tmp_path):
    trainer, artefact = fitted
    save_artefact(str(tmp_path / "lsd"), artefact)
    loaded = load_artefact(str(tmp_path / "lsd"))
    np.testing.assert_allclose(loaded["coef"], artefact["coef"])
    sampler = lsd_sampler(V, loaded)
    xs = np.asarray(run_masked(sampler, MIX, trajectory=True)[1].x)  # (NFE, n, L): the state after each step
    states = trainer.states
    code = np.where(xs[0] == MASK, 0, xs[0] + 1) @ ((V + 1) ** np.arange(L - 1, -1, -1))  # the row of ``states``
    first = np.bincount(code, minlength=len(states)) / xs.shape[1]
    learnt_law = np.asarray(trainer.student_laws(params_of(artefact))[0])
    fixed_law = np.asarray(trainer.student_laws(trainer.initial_params())[0])
    bound = 0.04
    assert 0.5 * np.abs(first - learnt_law).sum() < bound
    assert 0.5 * np.abs(first - fixed_law).sum() > bound  # control: the law of the other coefficients
    final = np.asarray(token_law(trainer.student_laws(params_of(artefact))[-1], states, V))
    assert tv(xs[-1], MIX, final) < bound


def test_bad_input():
    with pytest.raises(ValueError, match="base"):
        MaskedLSD(MIX.masked_model_fn(MASK), V, L, NFE, base="euler")
    with pytest.raises(ValueError, match="nfe"):
        MaskedLSD(MIX.masked_model_fn(MASK), V, L, 1)
    with pytest.raises(ValueError, match="base"):
        lsd_sampler(V, {"t": np.linspace(1, 0, 3), "coef": np.ones(2), "base": "ddim_eps"})

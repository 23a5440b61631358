"""Property tests (hypothesis) of the sampler registry: any combination of sampler, schedule,
NFE, spacing, final step and prediction type either raises a ``ValueError`` at build time that
names one of the arguments, or builds a sampler whose samples of an exact Gaussian mixture are
finite (no NaN/inf, no trace-time error) after exactly its declared number of model calls.
Examples are few (``max_examples``) so the file stays cheap; failures are shrunk and replayed."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from models.analytic import random_mixture
from samplers import registry
from samplers.core import sample
from samplers.grids import FINALS, SPACINGS
from samplers.param import PREDICTIONS
from samplers.schedules import SCHEDULES, get_schedule

GMM = random_mixture(dim=2, seed=3)
# words a build-time error must contain: the argument it rejects
ARGUMENTS = ("name", "nfe", "spacing", "final", "predicts", "schedule", "grid", "order", "t_start", "t_end")


def _named_error(err: ValueError) -> bool:
    return any(word in str(err) for word in ARGUMENTS)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(name=st.sampled_from(registry.names()), schedule=st.sampled_from(sorted(SCHEDULES)),
       nfe=st.integers(-1, 25), spacing=st.sampled_from((None, "bogus") + tuple(SPACINGS)),
       final=st.sampled_from(FINALS + ("bogus",)), predicts=st.sampled_from(PREDICTIONS + ("noise",)))
def test_build_is_a_named_error_or_finite_samples(name, schedule, nfe, spacing, final, predicts):
    _named_error_or_finite(name, schedule, nfe, spacing, final, predicts)


@pytest.mark.parametrize("name,schedule,nfe,spacing,final,predicts", [
    ("ddim", "flow", 1, None, None, "eps"),  # eps at alpha = 0 carried no information: NaN samples
    ("ddim", "flow", 6, None, None, "velocity"),  # log-SNR spacing from lambda = -inf: a NaN grid
    ("unipc", "flow", 6, "karras", None, "x0"),
    ("plms_hb", "flow", 6, None, None, "velocity"),  # x / alpha at alpha = 0
])
def test_found_by_fuzzing(name, schedule, nfe, spacing, final, predicts):
    """Combinations the property test found giving NaN samples; each is now a named ValueError."""
    with pytest.raises(ValueError, match="alpha|log-SNR"):
        registry.build(name, get_schedule(schedule), nfe, predicts, spacing=spacing, final=final)


def _named_error_or_finite(name, schedule, nfe, spacing, final, predicts):
    sch = get_schedule(schedule)
    try:
        smp = registry.build(name, sch, nfe, predicts, spacing=spacing, final=final)
    except ValueError as err:
        assert _named_error(err), err
        return
    grid = registry.grid(name, sch, nfe, spacing=spacing, final=final)
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 2)) * float(np.hypot(grid.alpha[0], grid.sigma[0]))
    out = jax.jit(sample, static_argnums=(0, 1))(smp, GMM.model_fn(sch, predicts), x, jax.random.PRNGKey(1))
    assert bool(jnp.all(jnp.isfinite(out.x))), (name, schedule, nfe, spacing, final, predicts)
    assert int(out.nfe) == smp.nfe <= max(nfe, 1)

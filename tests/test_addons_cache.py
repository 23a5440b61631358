"""Block caching on the library's DiT (samplers/addons/cache.py): a schedule refreshing every block is
the base solver bit for bit; a measured-change schedule evaluates fewer blocks (counted by the model's
branches) and stays close to the uncached run (control: never refreshing does not); bad tables are ValueErrors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.common import model_fn, random_params
from models.dit import DiT
from samplers import registry
from samplers.addons.cache import block_cache, cached_model, calibrate, refresh_schedule
from samplers.addons.core import with_addons
from samplers.core import sample
from samplers.schedules import vp_linear

SCH = vp_linear()


def test_block_cache_on_dit():
    m = DiT(patch_size=2, hidden=32, depth=4, num_heads=4, freq_dim=32, time_scale=1000.0)
    p = random_params(m, (8, 8, 3), scale=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
    s = registry.build("unipc", SCH, 10)
    base = jax.jit(lambda x: sample(s, model_fn(m, p), x).x)(x)
    run = lambda table: jax.jit(lambda x: sample(with_addons(s, block_cache(m, table)), cached_model(m, p), x))(x)
    full = run(calibrate(s, m, p, x, 0.0))
    assert jnp.array_equal(full.x, base) and int(full.carry[0][2]) == 40
    table = calibrate(s, m, p, x, 0.2)
    cached = run(table)
    evals = int(cached.carry[0][2])
    assert evals == table.sum() and evals < 40 and int(cached.nfe) == 10
    rel = lambda out: float(jnp.linalg.norm(out.x - base) / jnp.linalg.norm(base))
    assert 0 < rel(cached) < 1e-3
    never = np.zeros_like(table)
    never[0] = True  # control: blocks never refreshed after the first step
    assert not rel(run(never)) < 1e-3


def test_refresh_schedule_and_bad_tables():
    changes = np.array([[0.1, 0.3], [0.1, 0.3], [0.1, 0.3]])
    np.testing.assert_array_equal(refresh_schedule(changes, 0.25),
                                  [[True, True], [False, True], [False, True], [True, True]])
    m = DiT(patch_size=2, hidden=32, depth=4, num_heads=4, freq_dim=32)
    for bad in (np.ones((5, 3), bool), np.zeros((5, 4), bool), np.ones((5, 4))):
        with pytest.raises(ValueError):
            block_cache(m, bad)
    with pytest.raises(ValueError):
        refresh_schedule(changes, -1.0)

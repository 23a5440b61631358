"""Block caching and early exit on the library's DiT and UNet (samplers/addons/cache.py): a schedule
refreshing every block is the base solver bit for bit; a measured-change schedule evaluates fewer blocks
(counted by the model's branches) and stays close to the uncached run (control: never refreshing, the
early exit of depth 0, does not); bad tables are ValueErrors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.common import model_fn, random_params
from models.dit import DiT
from models.unet import UNet
from samplers import registry
from samplers.addons.cache import block_cache, cached_model, calibrate, early_exit, refresh_schedule
from samplers.addons.core import with_addons
from samplers.core import sample
from samplers.schedules import vp_linear

SCH = vp_linear()


def runs(m, p, x, steps):
    """UniPC with ``steps`` calls, its uncached result from ``x``, and ``run(table)``: the cached run."""
    s = registry.build("unipc", SCH, steps)
    base = jax.jit(lambda x: sample(s, model_fn(m, p), x).x)(x)
    run = lambda table: jax.jit(lambda x: sample(with_addons(s, block_cache(m, table)), cached_model(m, p), x))(x)
    return s, base, run


def relative(out, base) -> float:
    return float(jnp.linalg.norm(out.x - base) / jnp.linalg.norm(base))


def cached_run(s, m, p, x, run, blocks: int, steps: int):
    """The run with the schedule calibrated at threshold 0.2 and its block evaluations: as many as the
    schedule refreshes, fewer than all ``blocks``, and still ``steps`` model calls."""
    table = calibrate(s, m, p, x, 0.2)
    cached = run(table)
    evals = int(cached.carry[0][2])
    assert evals == table.sum() and evals < blocks and int(cached.nfe) == steps
    return cached, evals


def test_block_cache_on_dit():
    m = DiT(patch_size=2, hidden=32, depth=4, num_heads=4, freq_dim=32, time_scale=1000.0)
    p = random_params(m, (8, 8, 3), scale=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 3))
    s, base, run = runs(m, p, x, 10)
    every = calibrate(s, m, p, x, 0.0)
    full = run(every)
    assert jnp.array_equal(full.x, base) and int(full.carry[0][2]) == 40
    cached, evals = cached_run(s, m, p, x, run, 40, 10)
    rel = lambda out: relative(out, base)
    assert 0 < rel(cached) < 1e-3
    never = np.zeros_like(every)
    never[0] = True  # control: blocks never refreshed after the first step
    assert not rel(run(never)) < 1e-3


def test_block_cache_and_early_exit_on_unet():
    """The UNet's 11 blocks (down res, downsample, down res, mid res, attn, res, up res x2, upsample, up
    res x2) through the same add-on: refresh-every-step is bit for bit, the schedule at threshold 0.2 (measured
    relative change 5e-8 here) evaluates fewer blocks; the early exit of depth 0 after the first step
    (never refreshing) is rejected by the same bound."""
    m = UNet(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), norm_groups=4, dropout=0.0,
             time_scale=1000.0)
    p = random_params(m, (8, 8, 3), scale=0.1)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
    s, base, run = runs(m, p, x, 6)
    full = run(np.ones((6, 11), bool))
    assert jnp.array_equal(full.x, base) and int(full.carry[0][2]) == 66
    cached, evals = cached_run(s, m, p, x, run, 66, 6)
    rel = lambda out: relative(out, base)
    assert 0 < rel(cached) < 1e-4, rel(cached)
    never = run(early_exit([11, 0, 0, 0, 0, 0], 11))
    assert int(never.carry[0][2]) == 11 and not rel(never) < 1e-4
    with pytest.raises(ValueError):  # 10 columns for 11 blocks: caught at init
        run(np.ones((6, 10), bool))
    print(f"\nUNet block caching: {evals}/66 blocks, relative change {rel(cached):.1e} (never: {rel(never):.1e})")


def test_refresh_schedule_and_bad_tables():
    changes = np.array([[0.1, 0.3], [0.1, 0.3], [0.1, 0.3]])
    np.testing.assert_array_equal(refresh_schedule(changes, 0.25),
                                  [[True, True], [False, True], [False, True], [True, True]])
    m = DiT(patch_size=2, hidden=32, depth=4, num_heads=4, freq_dim=32)
    for bad in (np.zeros((5, 4), bool), np.ones((5, 4)), np.ones(4, bool)):
        with pytest.raises(ValueError):
            block_cache(m, bad)
    with pytest.raises(ValueError):
        refresh_schedule(changes, -1.0)
    np.testing.assert_array_equal(early_exit([3, 1, 0], 3), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    for bad in ([2, 1], [3, 4], [3, -1], [3.0, 1.0], []):
        with pytest.raises(ValueError):
            early_exit(bad, 3)

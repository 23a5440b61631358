"""SMC particles sharded over the mesh's data axis (samplers/smc/sharding.py), resampling global, in
subprocesses (the device count must be fixed before JAX starts): 8 fake CPU devices, and 2
processes x 2 devices joined by jax.distributed on 127.0.0.1 (gloo collectives). Both must equal
the single-device run of the same key: particles, log-weights, ancestors and log-Z."""
import numpy as np
import pytest

from tests.dist_utils import ROOT, run_devices, run_processes
from tests.smc_worker import PARTICLES, run

WORKER = str(ROOT / "tests" / "smc_worker.py")


@pytest.fixture(scope="module")
def single():
    return run()


def _assert_equal(got, ref, devices):
    assert int(got["devices"]) == devices and int(got["shard_rows"]) == PARTICLES // devices
    np.testing.assert_array_equal(got["ancestors"], ref["ancestors"])
    np.testing.assert_allclose(got["x"], ref["x"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["log_w"], ref["log_w"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["log_z"], ref["log_z"], atol=1e-4, rtol=0)


def test_eight_devices_equal_one(tmp_path, single):
    out = tmp_path / "smc8.npz"
    run_devices(WORKER, ["--out", str(out)], 8)
    got = np.load(out)
    _assert_equal(got, single, 8)
    # the run resampled (global ancestors cross shard boundaries), so the check is not vacuous
    assert np.any(single["ancestors"] // (PARTICLES // 8) != np.arange(PARTICLES) // (PARTICLES // 8))


def test_two_processes_equal_one(tmp_path, single):
    out = tmp_path / "smc2x2.npz"
    run_processes(WORKER, ["--out", str(out)])
    got = np.load(out)
    assert int(got["processes"]) == 2
    _assert_equal(got, single, 4)

"""Sharded time-parallel sampling across devices and processes, in subprocesses (the device count
must be fixed before JAX starts): 8 fake CPU devices, and 2 processes x 2 devices joined by
jax.distributed on 127.0.0.1 (gloo collectives). Both must equal the single-device run."""
import numpy as np
import pytest

from tests.dist_utils import ROOT, run_devices, run_processes
from tests.parallel_worker import run

WORKER = str(ROOT / "tests" / "parallel_worker.py")


def _single_device(name: str, slope: str = "one"):
    return run(name, 8, 1e-3, slope=slope)


@pytest.mark.parametrize("name,slope", [("ddpm", "one"), ("ddpm", "tangent"), ("ddpm", "jacobian")])
def test_eight_devices_equal_one(tmp_path, name, slope):
    """The tangent and Jacobian slopes differentiate through the sharded window call (jax.jvp of shard_map)."""
    out = tmp_path / "mesh8.npz"
    run_devices(WORKER, ["--out", str(out), "--sampler", name, "--check-errors", "--slope", slope], 8)
    got = np.load(out)
    assert int(got["devices"]) == 8 and list(got["mesh"]) == [2, 4]
    assert bool(got["mesh_error_raised"])
    x, rounds, calls = _single_device(name, slope)
    np.testing.assert_allclose(got["x"], x, atol=1e-5, rtol=0)
    assert int(got["rounds"]) <= 24


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "multi.npz"
    run_processes(WORKER, ["--out", str(out)])
    got = np.load(out)
    assert int(got["processes"]) == 2 and int(got["devices"]) == 4 and list(got["mesh"]) == [2, 2]
    x, _, _ = _single_device("ddpm")
    np.testing.assert_allclose(got["x"], x, atol=1e-5, rtol=0)

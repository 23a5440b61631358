"""SMC particles sharded over the mesh's data axis (samplers/smc/sharding.py), resampling global, in
subprocesses (the device count must be fixed before JAX starts): 8 fake CPU devices, and 2
processes x 2 devices joined by jax.distributed on 127.0.0.1 (gloo collectives). Both must equal
the single-device run of the same key: particles, log-weights, ancestors and log-Z."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.smc_worker import PARTICLES, run

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "smc_worker.py")
TIMEOUT = 240


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    proc = subprocess.run([sys.executable, WORKER, "--out", str(out)], env=_env(8), cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    _assert_equal(got, single, 8)
    # the run resampled (global ancestors cross shard boundaries), so the check is not vacuous
    assert np.any(single["ancestors"] // (PARTICLES // 8) != np.arange(PARTICLES) // (PARTICLES // 8))


def test_two_processes_equal_one(tmp_path, single):
    out = tmp_path / "smc2x2.npz"
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, WORKER, "--out", str(out), "--coordinator", address,
                               "--num-processes", "2", "--process-id", str(i)],
                              env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    logs = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            logs.append(err)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in logs)
    got = np.load(out)
    assert int(got["processes"]) == 2
    _assert_equal(got, single, 4)

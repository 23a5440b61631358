"""Sharded time-parallel sampling across devices and processes, in subprocesses (the device count
must be fixed before JAX starts): 8 fake CPU devices, and 2 processes x 2 devices joined by
jax.distributed on 127.0.0.1 (gloo collectives). Both must equal the single-device run."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.parallel_worker import run

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(ROOT / "tests" / "parallel_worker.py")
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


def _single_device(name: str, slope: str = "one"):
    return run(name, 8, 1e-3, slope=slope)


@pytest.mark.parametrize("name,slope", [("ddpm", "one"), ("ddpm", "tangent")])
def test_eight_devices_equal_one(tmp_path, name, slope):
    """The tangent slope differentiates through the sharded window call (jax.jvp of shard_map)."""
    out = tmp_path / "mesh8.npz"
    proc = subprocess.run([sys.executable, WORKER, "--out", str(out), "--sampler", name, "--check-errors",
                           "--slope", slope],
                          env=_env(8), cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    assert int(got["devices"]) == 8 and list(got["mesh"]) == [2, 4]
    assert bool(got["mesh_error_raised"])
    x, rounds, calls = _single_device(name, slope)
    np.testing.assert_allclose(got["x"], x, atol=1e-5, rtol=0)
    assert int(got["rounds"]) <= 24


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "multi.npz"
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
    assert int(got["processes"]) == 2 and int(got["devices"]) == 4 and list(got["mesh"]) == [2, 2]
    x, _, _ = _single_device("ddpm")
    np.testing.assert_allclose(got["x"], x, atol=1e-5, rtol=0)

"""Running a test worker script in subprocesses with a fixed number of fake CPU devices (the count must
be set before JAX starts): on one process, or on several joined by jax.distributed on 127.0.0.1."""
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


def host_env(devices: int) -> dict:
    """The environment of a subprocess with ``devices`` fake CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_devices(worker: str, args: list[str], devices: int) -> None:
    """``worker args`` on one process with ``devices`` devices; asserts it succeeds."""
    proc = subprocess.run([sys.executable, worker, *args], env=host_env(devices), cwd=ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def run_processes(worker: str, args: list[str], num_processes: int = 2, devices: int = 2) -> None:
    """``worker args --coordinator ... --num-processes n --process-id i`` on ``num_processes`` processes of
    ``devices`` devices each, joined by jax.distributed; asserts they all succeed."""
    address = f"127.0.0.1:{free_port()}"
    procs = [subprocess.Popen([sys.executable, worker, *args, "--coordinator", address,
                               "--num-processes", str(num_processes), "--process-id", str(i)],
                              env=host_env(devices), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(num_processes)]
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

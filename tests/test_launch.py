"""launch.py: the Gaussian-mixture job end to end, command-line overrides, and up-front config checks."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import launch
from configs import gmm

ROOT = Path(__file__).resolve().parents[1]


def _launch(*args):
    return subprocess.run([sys.executable, "launch.py", "--config=configs/gmm.py", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_run_with_overrides(tmp_path):
    workdir = tmp_path / "w"
    proc = _launch(f"--workdir={workdir}", "--config.batch_size=64", "--config.sampler.name=rk_rk4",
                   "--config.sampler.nfe=40", "--config.table.solvers=('ddim', 'rk_rk4')",
                   "--config.table.nfes=(8, 40)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "table.csv", "error_vs_nfe.png", "samples.png", "samples.npy"):
        assert (workdir / name).stat().st_size > 0, name
    config = json.loads((workdir / "config.json").read_text())
    assert config["sampler"]["name"] == "rk_rk4" and config["sampler"]["nfe"] == 40
    assert config["table"] == {"solvers": ["ddim", "rk_rk4"], "nfes": [8, 40]}
    assert np.load(workdir / "samples.npy").shape == (64, 2)
    rows = {(r["solver"], int(r["nfe"])): r for r in csv.DictReader(open(workdir / "table.csv"))}
    assert set(rows) == {("ddim", 8), ("ddim", 40), ("rk_rk4", 8), ("rk_rk4", 40)}
    err = {k: float(r["rms_error"]) for k, r in rows.items()}
    # rk4 at 40 calls (10 steps) tracks the exact PF-ODE solution closely; every solver improves with NFE
    assert err["rk_rk4", 40] < 1e-2, err
    assert err["ddim", 40] < err["ddim", 8] and err["rk_rk4", 40] < err["rk_rk4", 8], err
    assert all(np.isfinite(float(r["mean_log_prob"])) for r in rows.values())
    assert "RMS error" in proc.stdout and "| rk_rk4" in proc.stdout


def test_cli_rejects_unknown_sampler_before_any_work(tmp_path):
    proc = _launch(f"--workdir={tmp_path / 'w'}", "--config.sampler.name=nope")
    assert proc.returncode != 0
    assert "ValueError: config.sampler.name must be one of" in proc.stderr and "'heun'" in proc.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("field,value,message", [
    ("sampler.name", "nope", "config.sampler.name must be one of"),
    ("sampler.nfe", 0, "config.sampler.nfe must be an integer >= 1"),
    ("schedule", "cosine", "config.schedule must be one of"),
    ("predicts", "noise", "config.predicts must be one of"),
    ("sampler.spacing", "log", "config.sampler.spacing must be one of"),
    ("table.solvers", ("ddim", "dddim"), "config.table.solvers entry must be one of"),
    ("table.nfes", (5, -1), "config.table.nfes entry must be an integer >= 1"),
    ("batch_size", 0, "config.batch_size must be an integer >= 1"),
    ("mode", "serve", "config.mode must be one of"),
])
def test_bad_config_is_a_value_error_before_any_work(tmp_path, field, value, message):
    config = gmm.get_config()
    *parents, leaf = field.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=message):
        launch.run(config, str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()


def test_solver_that_cannot_spend_the_budget_is_rejected():
    config = gmm.get_config()
    config.sampler.name, config.sampler.nfe = "rk_rk4", 3  # four calls a step
    with pytest.raises(ValueError, match="too small"):
        launch.check(config)

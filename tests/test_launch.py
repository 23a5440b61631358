"""launch.py: the analytic (Gaussian-mixture) job end to end, command-line overrides, up-front config checks,
and that the entry point needs nothing from bench/."""
import csv
import json
import re
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
    proc = _launch(f"--workdir={workdir}", "--config.sampler.num_samples=64", "--config.sampler.name=rk_rk4",
                   "--config.sampler.nfe=40", "--config.table.solvers=('ddim', 'rk_rk4')",
                   "--config.table.nfes=(8, 40)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "table.csv", "error_vs_nfe.png", "samples/rk_rk4_nfe40.png"):
        assert (workdir / name).stat().st_size > 0, name
    config = json.loads((workdir / "config.json").read_text())
    assert config["sampler"]["name"] == ["rk_rk4"] and config["sampler"]["nfe"] == [40]  # a bare value is one
    assert config["table"] == {"solvers": ["ddim", "rk_rk4"], "nfes": [8, 40]}
    with np.load(workdir / "samples" / "rk_rk4_nfe40.npz") as f:
        assert f["x"].shape == (64, 2) and int(f["nfe"]) == 40
    rows = {(r["solver"], int(r["nfe"])): r for r in csv.DictReader(open(workdir / "table.csv"))}
    assert set(rows) == {("ddim", 8), ("ddim", 40), ("rk_rk4", 8), ("rk_rk4", 40)}
    err = {k: float(r["rms_error"]) for k, r in rows.items()}
    # rk4 at 40 calls (10 steps) tracks the exact PF-ODE solution closely; every solver improves with NFE
    assert err["rk_rk4", 40] < 1e-2, err
    assert err["ddim", 40] < err["ddim", 8] and err["rk_rk4", 40] < err["rk_rk4", 8], err
    assert all(np.isfinite(float(r["mean_log_prob"])) for r in rows.values())
    assert "RMS error" in proc.stdout and "| rk_rk4" in proc.stdout
    assert not re.search(r"^I\d{4} ", proc.stderr, re.M), proc.stderr[:2000]  # no absl/XLA INFO lines by default


def test_every_sampler_pair_is_sampled_with_the_train_schema(tmp_path):
    config = gmm.get_config()
    config.sampler.name, config.sampler.nfe = ("ddim", "unipc"), (5, 8)
    config.sampler.num_samples = 32
    config.schedule.name, config.schedule.kwargs = "vp_linear", {"beta_max": 15.0}
    config.data.kwargs.dim, config.data.kwargs.num_components = 3, 2
    config.table.solvers, config.table.nfes = ("ddim",), (5,)
    summary = launch.run(config, str(tmp_path))
    assert [(r["solver"], r["nfe"]) for r in summary["sampled"]] == [("ddim", 5), ("ddim", 8), ("unipc", 5),
                                                                      ("unipc", 8)]
    for r in summary["sampled"]:
        with np.load(tmp_path / "samples" / f"{r['solver']}_nfe{r['nfe']}.npz") as f:
            assert f["x"].shape == (32, 3)
    # the same (solver, NFE) in the table, from the same noise: the same error
    assert summary["table"][0]["rms_error"] == pytest.approx(summary["sampled"][0]["rms_error"], rel=1e-6)
    assert summary["sampled"][1]["rms_error"] < summary["sampled"][0]["rms_error"]  # ddim: 8 calls beat 5


def _one_error_line(proc) -> str:
    """A usage error: exit status 2 and a single ``error: ...`` line on stderr, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_cli_rejects_unknown_sampler_before_any_work(tmp_path):
    line = _one_error_line(_launch(f"--workdir={tmp_path / 'w'}", "--config.sampler.name=nope"))
    assert "sampler.name must be one of" in line and "'heun'" in line
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("args,message", [
    (["--config=configs/nope.py"], "--config: no such file 'configs/nope.py'"),
    (["--config=configs/gmm.py", "--config.sampler.nmae=3"], "no such config field"),
    (["--config=configs/digits.py", "--config.mode=sample"], "no checkpoint in"),  # sample before train
])
def test_cli_bad_flag_or_missing_file_is_one_error_line(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "launch.py", *args, f"--workdir={tmp_path / 'w'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert message in _one_error_line(proc)


@pytest.mark.parametrize("field,value,message", [
    ("sampler.name", ("ddim", "nope"), "sampler.name must be one of"),
    ("sampler.nfe", (0,), "sampler.nfe must be an integer >= 1"),
    ("sampler.num_samples", 0, "sampler.num_samples must be an integer >= 1"),
    ("schedule.name", "cosine", "schedule.name must be one of"),
    ("schedule.kwargs", {"beta": 3.0}, "schedule.kwargs do not fit"),
    ("predicts", "noise", "predicts must be one of"),
    ("sampler.spacing", "log", "sampler.spacing must be one of"),
    ("data.name", "moons", "data.name must be one of"),
    ("data.kwargs", {"dim": 2, "spred": 1.0}, "data.kwargs do not fit"),
    ("data.kwargs", {"dim": 2, "scale": 0.0}, "data.kwargs.scale must lie in"),
    ("table.solvers", ("ddim", "dddim"), "table.solvers entry must be one of"),
    ("table.nfes", (5, -1), "table.nfes entry must be an integer >= 1"),
    ("reference_tol", 0.0, "reference_tol must lie in"),
    ("mode", "serve", "mode must be one of"),
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
    config.sampler.name, config.sampler.nfe = ("rk_rk4",), (3,)  # four calls a step
    with pytest.raises(ValueError, match="too small"):
        launch.check(config)


def test_analytic_and_train_configs_pick_their_jobs():
    from configs import digits

    assert launch.check(gmm.get_config())[0] is launch.ANALYTIC_MODES["sample"]
    assert launch.check(digits.get_config())[0] is launch.TRAIN_MODES["train"]


def test_launch_does_not_import_bench():
    code = "import sys, launch; print(sorted(m for m in sys.modules if m == 'bench' or m.startswith('bench.')))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"

"""Every configs/distill_*.py validates (train.config.validate), and bench/distill.py's smallest path
(one student on the exact mixture, a few train steps) runs and builds its table, plot and goal verdict."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from bench import distill as bench
from train.config import resolve, validate
from train.loop import CHECKPOINT_DIR, read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("distill_*.py"))


def load_config(path: Path):
    spec = importlib.util.spec_from_file_location(f"configs.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def fake_workdir(path: Path, config) -> str:
    """A stand-in for a trained workdir of ``config``: its config.json and an (empty) checkpoint step,
    all that validation reads (train.distill.teacher.check_teacher loads nothing)."""
    (path / CHECKPOINT_DIR / "1").mkdir(parents=True)
    (path / "config.json").write_text(resolve(config).to_json_best_effort())
    return str(path)


def test_there_is_a_digits_config_per_method():
    names = {p.stem for p in CONFIGS}
    assert {f"distill_digits_{m}" for m in ("cd", "ct", "ict", "mcd", "shortcut")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_validates(path, tmp_path):
    config = load_config(path)
    teacher = config.distill.teacher
    if teacher not in ("", "analytic"):
        # a trained teacher is the workdir launch.py gives configs/<name>.py by default: workdir/<name>
        parent, name = os.path.split(teacher)
        assert parent == "workdir" and (ROOT / "configs" / f"{name}.py").is_file(), teacher
        config.distill.teacher = fake_workdir(tmp_path / name, load_config(ROOT / "configs" / f"{name}.py"))
    validate(config)


def test_a_teacher_of_other_data_is_rejected(tmp_path):
    """Control of the check above: the digits CD student with a 2-D mixture's workdir as its teacher fails."""
    config = load_config(ROOT / "configs" / "distill_digits_cd.py")
    gmm = load_config(ROOT / "configs" / "distill_gmm_cd.py")
    gmm.mode, gmm.distill.method, gmm.distill.teacher = "train", "", ""
    config.distill.teacher = fake_workdir(tmp_path / "gmm", gmm)
    with pytest.raises(ValueError, match="models data of shape"):
        validate(config)


def test_goal_verdict_and_table_cells():
    ref = (f"teacher {bench.REFERENCE[0]}", bench.REFERENCE[1])
    rows = {ref: {"swd": [0.1, 0.1]}, ("a", 2): {"swd": [0.119, 0.119]}, ("b", 2): {"swd": [0.13, 0.13]},
            ("a", 1): {"swd": [0.149, 0.149]}}
    lines = bench.goal_lines(rows, ["a", "b"])
    assert "best 2-step student a" in lines[0] and lines[0].endswith(": met")
    assert lines[1].endswith(": met")
    # control: 1% past either factor is not met
    rows[("a", 2)]["swd"], rows[("a", 1)]["swd"] = [0.121, 0.121], [0.151, 0.151]
    lines = bench.goal_lines(rows, ["a", "b"])
    assert lines[0].endswith("not met") and lines[1].endswith("not met")
    # cells: mean (worst draw), the worst being the largest distance and the smallest confident fraction
    md = bench.table({("a", 1): {"swd": [0.1, 0.3], "confident": [0.9, 0.5]}},
                     {"swd": ("sliced W2", True), "confident": ("confident fraction", False)}, nfes=(1,))
    assert "0.2 (0.3)" in md and "0.7 (0.5)" in md


def test_bench_smallest_path_runs(tmp_path):
    md = bench.run_part("mixture", str(tmp_path), seeds=1, num_samples=256, steps=10, only=("cd",))
    body = [line for line in md.splitlines() if line.startswith("| ")]
    labels = [line.split("|")[1].strip() for line in body[1:]]
    assert labels == ["teacher dpm_solver_pp_2m"] * 2 + ["teacher unipc"] * 2 + ["cd"] * 2
    for line in body[1:]:
        cells = [c.strip() for c in line.split("|")[3:3 + len(bench.NFES)]]
        assert all(np.isfinite(float(c)) for c in cells), line
    assert (tmp_path / "distill_mixture.png").stat().st_size > 0
    assert read_metrics(str(tmp_path / "mixture_cd"))[-1]["step"] == 10

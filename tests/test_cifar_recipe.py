"""The CIFAR-10 recipe (configs/dpm_cifar.py) end to end through ``launch.py``, as a user runs it.

train -> sample -> eval in three subprocesses on a tiny fake CIFAR-10 archive in the official python
format (tests/test_train_data.py builds it), the recipe's DDPM++ UNet shrunk by ``model.kwargs``
overrides, both recipe solvers at two small NFEs, and FID through models/inception.py with a
random-weights file in pytorch-fid's format (tests/test_inception.py builds its state dict). A smoke
test of the plumbing (data loader, UNet in the train loop, checkpoints, image outputs, FID), not of
sample quality. The subprocesses run with XLA:CPU's backend optimisation off: it cuts the compile time
of the UNet's train step about 3x here (compiles dominate this test) and leaves the program as it is.
"""
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.inception import FID_WEIGHTS_FILE
from tests.test_inception import random_state_dict
from tests.test_train_data import fake_cifar, write_archive
from train.data import CIFAR10_ARCHIVE, load_cifar10

ROOT = Path(__file__).resolve().parents[1]
SOLVERS = ("dpm_solver_pp_2m", "dpm_solver_pp_3m")  # the recipe's
NFES = (3, 4)  # sampled; FID at the last (each FID row costs ~8 s here: Inception + 2048x2048 eigh)
NUM_SAMPLES = 4
TRAIN_STEPS = 2
TINY_UNET = ("{'channels': 8, 'channel_mult': (1, 2), 'num_res_blocks': 1, 'attn_resolutions': (), "
             "'mid_attention': False, 'norm_groups': 4, 'dropout': 0.1}")


def _launch(workdir, *overrides, nfes=NFES):
    env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"}
    proc = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/dpm_cifar.py", f"--workdir={workdir}",
         f"--config.model.kwargs={TINY_UNET}", f"--config.sampler.name={SOLVERS}", f"--config.sampler.nfe={nfes}",
         f"--config.sampler.batch_size={NUM_SAMPLES}", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_cifar_recipe_train_sample_eval_via_launch(tmp_path):
    torch = pytest.importorskip("torch")
    data_dir, workdir = tmp_path / "data", tmp_path / "w"
    data_dir.mkdir()
    write_archive(data_dir / CIFAR10_ARCHIVE, fake_cifar(np.random.default_rng(0)))
    assert load_cifar10(str(data_dir)).x.shape[0] >= 8  # the fake training set holds a batch
    weights = tmp_path / FID_WEIGHTS_FILE
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in random_state_dict().items()}, weights)

    # train: a few steps on the fake archive, checkpoint at the end
    _launch(workdir, f"--config.data.dir={data_dir}", f"--config.train.num_steps={TRAIN_STEPS}",
            "--config.train.batch_size=8", "--config.train.warmup_steps=1", "--config.train.log_every=1",
            "--config.train.checkpoint_every=1000")
    assert sorted(os.listdir(workdir / "checkpoints")) == [str(TRAIN_STEPS)]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, TRAIN_STEPS + 1))
    assert all(math.isfinite(r["loss"]) for r in records)
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["name"] == "ddpmpp_cifar10" and config["model"]["kwargs"]["channels"] == 8

    # sample: a PNG grid and an .npz of 32x32x3 images per solver x NFE (sampling needs no data)
    _launch(workdir, "--config.mode=sample", f"--config.sampler.num_samples={NUM_SAMPLES}")
    for name in SOLVERS:
        for nfe in NFES:
            stem = workdir / "samples" / f"{name}_nfe{nfe}"
            with np.load(f"{stem}.npz") as f:
                assert f["x"].shape == (NUM_SAMPLES, 32, 32, 3) and f["x"].dtype == np.float32
                assert np.all(np.isfinite(f["x"])) and int(f["nfe"]) == nfe
                assert f["images"].shape == (NUM_SAMPLES, 32, 32, 3) and f["images"].dtype == np.uint8
            import matplotlib.pyplot as plt

            grid = plt.imread(f"{stem}.png")
            assert grid.ndim == 3 and grid.shape[2] in (3, 4) and min(grid.shape[:2]) >= 2 * 32

    # eval: FID against the (fake) training set for every solver x NFE of the run
    proc = _launch(workdir, "--config.mode=eval", f"--config.data.dir={data_dir}", "--config.eval.metrics=('fid',)",
                   f"--config.eval.num_samples={NUM_SAMPLES}", f"--config.eval.inception_weights={weights}",
                   nfes=NFES[-1:])
    with open(workdir / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    nfe = NFES[-1]
    assert [(r["solver"], int(r["nfe"]), int(r["nfe_used"])) for r in rows] == [(s, nfe, nfe) for s in SOLVERS]
    fids = [float(r["fid"]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in fids), fids
    assert (workdir / "eval_fid.png").stat().st_size > 0 and (workdir / "fid_stats_cifar10_train.npz").exists()
    assert f"checkpoint step {TRAIN_STEPS}" in proc.stdout and "| dpm_solver_pp_3m" in proc.stdout

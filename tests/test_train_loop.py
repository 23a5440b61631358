"""The train loop: interrupted-and-resumed runs equal uninterrupted ones (parameters, EMA, optimiser
state), a crash mid-save leaves the previous checkpoint usable, SIGTERM saves and the run resumes,
metrics/plot files, EMA and optimiser, the progress line."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from train import data as data_lib
from train.checkpoint import TMP_SUFFIX, Checkpointer
from train.config import build_network, build_objective, resolve
from train.ema import ema_decay, ema_update
from train.loop import CHECKPOINT_DIR, LOSS_PLOT, METRICS_FILE, fit, read_metrics
from train.optim import learning_rate, make_optimizer
from train.report import Progress

ROOT = Path(__file__).resolve().parents[1]

STEPS = 6


def tiny_config(**train):
    c = resolve({
        "seed": 3,
        "model": {"name": "mlp", "kwargs": {"hidden": 16, "depth": 2, "embed_dim": 8}},
        "data": {"name": "gmm", "kwargs": {"n": 64, "dim": 2}},
        "train": {"num_steps": STEPS, "batch_size": 16, "checkpoint_every": 2, "log_every": 1,
                  "lr": 1e-2, "warmup_steps": 2, "lr_schedule": "cosine", "ema_decay": 0.9},
    })
    c.train.update(train)
    return c


class Interrupting(data_lib.Batches):
    """Batches that raise ``exc`` when asked for step ``at`` (a Ctrl-C or a crash mid-run)."""

    def __init__(self, *args, at: int, exc: type, **kwargs):
        super().__init__(*args, **kwargs)
        self.at, self.exc = at, exc

    def __call__(self, step):
        if step == self.at:
            raise self.exc(f"stopped at step {step}")
        return super().__call__(step)


def run(config, workdir, interrupt_at=None, exc=KeyboardInterrupt):
    ds = data_lib.load("gmm", **config.data.kwargs)
    if interrupt_at is None:
        batches = data_lib.Batches(ds, config.train.batch_size, config.seed)
    else:
        batches = Interrupting(ds, config.train.batch_size, config.seed, at=interrupt_at, exc=exc)
    return fit(build_network(config), build_objective(config), batches, config.train, str(workdir), config.seed,
               verbose=False)


def assert_states_equal(a, b):
    for name in ("params", "ema", "opt_state"):
        la, lb = jax.tree_util.tree_leaves(getattr(a, name)), jax.tree_util.tree_leaves(getattr(b, name))
        assert len(la) == len(lb) > 0
        for x, y in zip(la, lb):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)  # bitwise
    assert int(a.step) == int(b.step)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("full")
    return run(tiny_config(), workdir), workdir


def test_ctrl_c_saves_and_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    full, _ = uninterrupted
    config = tiny_config()
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path, interrupt_at=3)
    assert Checkpointer(str(tmp_path / CHECKPOINT_DIR)).all_steps() == [2, 3]  # periodic + at exit
    resumed = run(config, tmp_path)
    assert_states_equal(resumed, full)
    steps = [r["step"] for r in read_metrics(str(tmp_path))]
    assert steps == list(range(1, STEPS + 1))


def test_crash_resumes_from_last_periodic_checkpoint(uninterrupted, tmp_path):
    full, _ = uninterrupted
    config = tiny_config()
    with pytest.raises(RuntimeError):
        run(config, tmp_path, interrupt_at=5, exc=RuntimeError)
    assert Checkpointer(str(tmp_path / CHECKPOINT_DIR)).latest_step() == 4  # no save after a crash
    assert [r["step"] for r in read_metrics(str(tmp_path))] == [1, 2, 3, 4, 5]
    resumed = run(config, tmp_path)
    assert_states_equal(resumed, full)
    assert [r["step"] for r in read_metrics(str(tmp_path))] == list(range(1, STEPS + 1))


def test_half_written_checkpoint_is_ignored(uninterrupted, tmp_path):
    full, src = uninterrupted
    workdir = tmp_path / "run"
    shutil.copytree(src, workdir)
    ckpt_dir = workdir / CHECKPOINT_DIR
    assert Checkpointer(str(ckpt_dir)).all_steps() == [2, 4, 6]
    # a crash while writing step 6: its directory is still the temporary one, with files missing
    tmp = ckpt_dir / f"6{TMP_SUFFIX}-1700000000"
    os.rename(ckpt_dir / "6", tmp)
    shutil.rmtree(tmp / "state")
    ckpt = Checkpointer(str(ckpt_dir))
    assert ckpt.latest_step() == 4
    ckpt.close()
    resumed = run(tiny_config(), workdir)  # picks up step 4 and redoes 5, 6
    assert_states_equal(resumed, full)
    assert not tmp.exists()  # leftovers are cleaned up


def test_metrics_file_and_loss_plot(uninterrupted):
    _, workdir = uninterrupted
    records = read_metrics(str(workdir))
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in records)
    lr = learning_rate(1e-2, STEPS, 2, "cosine")
    np.testing.assert_allclose([r["lr"] for r in records], [float(lr(s)) for s in range(STEPS)], rtol=1e-6)
    assert os.path.getsize(os.path.join(workdir, LOSS_PLOT)) > 1000
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        assert json.loads(f.readline())["step"] == 1


def test_resume_refuses_a_changed_data_order(uninterrupted, tmp_path):
    _, src = uninterrupted
    shutil.copytree(src, tmp_path / "run")
    with pytest.raises(ValueError, match="global_batch"):
        run(tiny_config(batch_size=8, num_steps=8), tmp_path / "run")


def test_ema_and_optimizer():
    assert float(ema_decay(0, 0.999)) == pytest.approx(0.1)
    assert float(ema_decay(10_000, 0.999)) == pytest.approx(0.999)
    assert float(ema_decay(0, 0.5, warmup=False)) == 0.5
    ema = ema_update({"w": np.float32(0.0)}, {"w": np.float32(1.0)}, ema_decay(5, 0.9, warmup=False))
    assert float(ema["w"]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="ema decay"):
        ema_decay(0, 1.0)

    lr = learning_rate(1.0, 100, 10, "cosine")
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5) and float(lr(10)) == pytest.approx(1.0)
    assert float(lr(100)) == pytest.approx(0.0, abs=1e-6)
    cfg = tiny_config(optimizer="adamw", weight_decay=0.1, grad_clip=0.5).train
    tx, _ = make_optimizer(cfg)
    params = {"w": np.ones(3, np.float32)}
    updates, _ = tx.update({"w": np.full(3, 100.0, np.float32)}, tx.init(params), params)
    assert np.all(np.isfinite(updates["w"]))
    # clipping, read where Adam's scale invariance and the warm-up's zero learning rate cannot hide it:
    # the first moment after one step is (1 - b1) g, g clipped to global norm 0.5 (a small g unchanged)
    first_moment = lambda cfg, g: np.asarray(optax.tree_utils.tree_get(
        make_optimizer(cfg)[0].update({"w": g}, make_optimizer(cfg)[0].init(params), params)[1], "mu")["w"])
    huge, small = np.full(3, 100.0, np.float32), np.full(3, 0.1, np.float32)
    np.testing.assert_allclose(first_moment(cfg, huge), (1 - cfg.b1) * 0.5 / np.sqrt(3), rtol=1e-6)
    np.testing.assert_allclose(first_moment(cfg, small), (1 - cfg.b1) * small, rtol=1e-6)
    # control: the same check fails without clipping (grad_clip=0) or with a 10% larger threshold
    for wrong in (tiny_config(optimizer="adamw", weight_decay=0.1, grad_clip=0.0).train,
                  tiny_config(optimizer="adamw", weight_decay=0.1, grad_clip=0.55).train):
        assert not np.allclose(first_moment(wrong, huge), (1 - cfg.b1) * 0.5 / np.sqrt(3), rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer(tiny_config(optimizer="sgd").train)
    with pytest.raises(ValueError, match="warmup_steps"):
        learning_rate(1.0, 10, 20)
    assert isinstance(tx, optax.GradientTransformation)


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, capsys):
    from train import jobs

    config = tiny_config(num_steps=1_000_000, checkpoint_every=1_000_000, log_every=10, warmup_steps=0,
                         lr_schedule="constant")
    code = (f"from train.config import resolve; from train import jobs; "
            f"jobs.train(resolve({config.to_dict()!r}), {str(tmp_path)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while len(read_metrics(str(tmp_path))) < 3:  # past compilation, stepping
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no training progress within 60 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+); checkpoint saved", out).group(1))
    logged = [r["step"] for r in read_metrics(str(tmp_path))]
    assert stopped >= logged[-1] >= 30
    assert Checkpointer(str(tmp_path / CHECKPOINT_DIR)).all_steps() == [stopped]  # only the one saved at exit

    config.train.num_steps = stopped + 25
    summary = jobs.train(config, str(tmp_path))
    assert f"resuming at step {stopped}" in capsys.readouterr().out
    assert summary["step"] == stopped + 25
    resumed = [r["step"] for r in read_metrics(str(tmp_path)) if r["step"] > stopped]
    assert resumed[0] > 0 and resumed[-1] == stopped + 25  # the restarted run logs from where it stopped on
    assert Checkpointer(str(tmp_path / CHECKPOINT_DIR)).latest_step() == stopped + 25


def test_progress_line():
    stream = io.StringIO()
    progress = Progress(10, "[train] step ", stream, done=4, per_unit=(32, "img"), skip_first=True)
    assert np.isnan(progress.advance(5))  # the first update only starts the clock (compile time)
    progress.show(float("nan"))
    assert "| ? it/s ? img/s | " in stream.getvalue() and "ETA ?" in stream.getvalue()
    stream.seek(0)
    stream.truncate()
    time.sleep(0.05)
    rate = progress.advance(7)
    assert 0 < rate <= 2 / 0.05
    progress.show(rate, "loss 0.5")
    line = stream.getvalue()
    assert line.startswith("[train] step [ 7/10]  70.0% | ") and "img/s" in line and line.endswith("| loss 0.5\n")
    counter = Progress(2, "table ", stream)
    counter.update("a")
    counter.update("b")
    assert stream.getvalue().splitlines()[-1].startswith("table [2/2] 100.0% | ")
    with pytest.raises(ValueError, match="total"):
        Progress(0)

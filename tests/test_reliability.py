"""Divergence guard, atomic checkpoints and safe loading, on real runs over the bundled sample."""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from aelightning.builders import build_datamodule
from aelightning.callbacks.resume import collect_rng_state, restore_rng_state
from aelightning.checkpointing.checkpoint import (
    AtomicCheckpointIO,
    find_last_checkpoint,
    load_checkpoint,
    load_model_from_checkpoint,
)
from aelightning.cli.reporting import run_reporting_errors
from aelightning.cli.train import train
from aelightning.data.mnist import load_mnist_sample
from aelightning.errors import CheckpointError
from aelightning.runtime import step_values
from tests.conftest import ROOT, TINY, compose_config


def _all_finite(state_dict: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state_dict.values() if v.is_floating_point())


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One short real run (5 steps) whose checkpoints the loading tests use."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_config(
        root / "run",
        [*TINY, f"data.data_dir={root}", "trainer.limit_train_batches=5", "test=false"],
    )
    train(cfg)
    return root / "run"


# ------------------------------------------------------------------------ divergence guard
@pytest.mark.parametrize(("check_every", "fold_every"), [(1, 256), (1000, 256), (1000, 2)])
def test_lr_1e4_stops_on_the_guard_and_keeps_a_finite_last_ckpt(
    make_cfg, capsys, monkeypatch, check_every, fold_every
):
    # an unbounded output lets lr=1e4 blow the loss up within a few steps; a save after every
    # step means the newest checkpoint is the one just before the bad step. With
    # check_every=1000 the per-step check never runs: the save-time check must catch it; with
    # fold_every=2 the kept losses are folded into the device flag between checks too.
    monkeypatch.setattr(step_values, "LIMIT", fold_every)
    cfg: DictConfig = make_cfg(
        "model.optimizer.lr=1e4",
        "net.output_activation=none",
        "net.bottleneck_activation=none",
        "trainer.max_epochs=3",
        "callbacks.resume_checkpoint.every_n_train_steps=1",
        f"callbacks.divergence_guard.check_every_n_steps={check_every}",
    )
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    found = re.fullmatch(
        r"error: training diverged: train/recon=(nan|inf) went non-finite at step (\d+); the run "
        r"stopped without saving it, so '(.+)' keeps the last finite state — lower "
        r"model\.optimizer\.lr or set trainer\.gradient_clip_val\.",
        err,
    )
    assert found, err
    step, kept = int(found.group(2)), Path(found.group(3))
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert kept == last and step >= 1
    ckpt = load_checkpoint(last)
    assert ckpt["global_step"] == step  # the weights before the step that went non-finite
    assert _all_finite(ckpt["state_dict"])
    assert not torch.isfinite(_replay_loss(cfg, last, step))


def _replay_loss(cfg: DictConfig, checkpoint: Path, step: int) -> torch.Tensor:
    """The loss of batch ``step`` (epoch 0) computed from the weights in ``checkpoint``."""
    model = load_model_from_checkpoint(checkpoint)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    loader.set_epoch(0)
    x = next(b for i, b in enumerate(loader) if i == step)[0].float() / 255
    with torch.no_grad():
        return model.loss(x, x, *model.forward_step(x))["loss"]


# ---------------------------------------------------------------------- atomic checkpoints
def test_exception_in_the_middle_of_a_save_leaves_the_previous_checkpoint(tmp_path):
    class Explodes:
        def __reduce__(self):
            raise RuntimeError("disk full")

    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint(
            {"state_dict": {"w": torch.full((1000,), 2.0)}, "x": Explodes(), "global_step": 2},
            path,
        )
    ckpt = io.load_checkpoint(path)
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_sigkill_in_the_middle_of_a_save_leaves_the_previous_checkpoint(tmp_path):
    # a real process dies by SIGKILL after writing half of the new file
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from aelightning.checkpointing.checkpoint import AtomicCheckpointIO
        io, path = AtomicCheckpointIO(), {str(tmp_path / "last.ckpt")!r}
        io.save_checkpoint({{"global_step": 1, "state_dict": {{"w": torch.ones(3)}}}}, path)
        def dying_save(obj, f, *args, **kwargs):
            f.write(b"PK" + bytes(4096))
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        io.save_checkpoint({{"global_step": 2, "state_dict": {{"w": torch.zeros(3)}}}}, path)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "last.ckpt")["global_step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.")  # never *.ckpt
    assert find_last_checkpoint(tmp_path) == tmp_path / "last.ckpt"


def test_training_saves_through_the_atomic_io(make_cfg, monkeypatch):
    import aelightning.checkpointing.checkpoint as checkpoint

    saved: list[str] = []

    def spy(obj, path):
        saved.append(Path(path).name)
        real(obj, path)

    real = checkpoint.atomic_torch_save
    monkeypatch.setattr(checkpoint, "atomic_torch_save", spy)
    cfg = make_cfg(
        "trainer.limit_train_batches=2", "test=false", "logger=none", "callbacks.lr_monitor=null"
    )
    train(cfg)
    assert {"last.ckpt", "epoch_000.ckpt"} <= set(saved)
    files = {p.name for p in (Path(cfg.paths.output_dir) / "checkpoints").iterdir()}
    assert files == {"last.ckpt", "epoch_000.ckpt"}


# --------------------------------------------------------------------------- safe loading
class _Payload:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.fixture
def crafted(trained_run, tmp_path) -> tuple[Path, Path]:
    """A real training checkpoint with a code-running payload slipped in."""
    marker = tmp_path / "pwned"
    ckpt = load_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    ckpt["loops"]["payload"] = _Payload(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    # the payload is live: a plain pickle load would run it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_crafted_checkpoint_is_refused_and_runs_nothing(crafted):
    path, marker = crafted
    message = r"refusing to load checkpoint .*evil\.ckpt.*\((posix|os|nt)\.system\)"
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        load_model_from_checkpoint(path)
    with pytest.raises(CheckpointError, match=message):
        AtomicCheckpointIO().load_checkpoint(path)  # what Trainer.fit(ckpt_path=...) uses
    assert not marker.exists()


def test_crafted_checkpoint_as_ckpt_path_exits_with_one_sentence(crafted, make_cfg, capsys):
    path, marker = crafted
    cfg = make_cfg(f"ckpt_path={path}")
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to load checkpoint") and "may run code" in err
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(trained_run, tmp_path):
    data = (trained_run / "checkpoints" / "last.ckpt").read_bytes()
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_checkpoint(broken)


def test_a_full_training_checkpoint_needs_no_extra_safe_globals(trained_run):
    # plain torch weights-only load, no allow-list: nothing of ours is pickled as an object
    ckpt = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert {"state_dict", "optimizer_states", "loops", "callbacks"} <= set(ckpt)
    assert "aelightning_config" in ckpt and ckpt["aelightning_input_shape"] == [1, 28, 28]
    assert "rng" in ckpt["callbacks"]["ResumeCheckpoint"]


def test_load_model_from_checkpoint_rebuilds_the_trained_model(trained_run):
    path = trained_run / "checkpoints" / "last.ckpt"
    model = load_model_from_checkpoint(path)
    saved = load_checkpoint(path)["state_dict"]
    assert not model.training
    assert set(model.state_dict()) == set(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    images, _ = load_mnist_sample()
    x = images[:8].float() / 255
    with torch.no_grad():
        assert model(x).shape == x.shape


def test_checkpoint_without_config_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match="no 'aelightning_config'"):
        load_model_from_checkpoint(path)


# ----------------------------------------------------------------------------------- RNG
def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    state = collect_rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.save({"rng": state}, tmp_path / "rng.ckpt")
    restore_rng_state(torch.load(tmp_path / "rng.ckpt", weights_only=True)["rng"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2]

"""Resume exactly: stop a real run (SIGKILL, SIGTERM, Ctrl-C), continue it, compare the weights
with a run that was never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from aelightning.checkpointing.checkpoint import load_checkpoint
from aelightning.cli.reporting import run_reporting_errors
from aelightning.cli.train import train
from aelightning.errors import CheckpointError
from tests.conftest import ROOT, TINY, compose_config


class SignalAtStep(L.Callback):
    """Test helper: the run sends ``signum`` to its own process after optimizer step ``step``
    (a deterministic moment; SIGKILL then kills it like ``kill -9`` from outside would).

    ``inside=True``: right before the optimizer step that follows step ``step`` instead, from
    ``on_before_optimizer_step``, which runs for every optimizer step, also inside a fused
    group of ``runtime.steps_per_call`` (whose batch-end hooks run once per group)."""

    def __init__(self, step: int, signum: int, times: int = 1, inside: bool = False) -> None:
        self.step, self.signum, self.times = int(step), int(signum), int(times)
        self.inside = bool(inside)

    def _signal(self, trainer) -> None:
        if trainer.global_step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.inside:
            self._signal(trainer)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.inside:
            self._signal(trainer)


@pytest.fixture(autouse=True)
def _interactive_sigint():
    """Ctrl-C as in a terminal: a shell that starts the suite in the background (``make test
    &``, some CI runners) sets SIGINT to ignored, and the run then rightly leaves it alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest difference between two state dicts: absolute for values up to 1 (weights),
    relative above (the epoch-loss sum: a stop inside a fused group sums it in other chunks)."""
    assert a.keys() == b.keys()
    return max(
        float(((a[k].double() - b[k].double()).abs() / b[k].double().abs().clamp(min=1)).max())
        for k in a
    )


# ----------------------------------------------------------------------- in-process runs
#: small but real: 6 batches of 128 noisy digits per epoch, deterministic kernels, no logger
SHORT = [
    *TINY,
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=6",
    "trainer.deterministic=true",
    "noise=gaussian",
    "test=false",
    "logger=none",
    "callbacks.lr_monitor=null",
    "callbacks.reconstructions=null",
    # a stop request acts at the end of a step; several steps per Lightning step end it at the
    # end of the group (the fused variant below)
    "runtime.steps_per_call=1",
]


def _cfg(root: Path, run: str, *overrides: str) -> DictConfig:
    return compose_config(root / run, [*SHORT, f"data.data_dir={root}", *overrides])


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Any]:
    """Final weights and metrics of the uninterrupted short run."""
    root = tmp_path_factory.mktemp("reference")
    cfg = _cfg(root, "run")
    metrics = train(cfg)["metrics"]
    return {
        "weights": _weights(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"),
        "metrics": metrics,
    }


@pytest.mark.parametrize("steps_per_call", [1, 4])
@pytest.mark.parametrize(
    ("signum", "reason", "code"),
    [(15, "SIGTERM", 143), (2, "Ctrl-C", 130)],
    ids=["sigterm", "ctrl-c"],
)
def test_stop_signal_saves_and_resume_matches_an_uninterrupted_run(
    tmp_path, capsys, reference, signum, reason, code, steps_per_call
):
    """With 4 optimizer steps per Lightning step the signal arrives inside the group of steps
    7-10 (epoch 2's batches 1-4) and the run stops at the group's end, step 10."""
    helper = "tests.test_resume.SignalAtStep"
    fused = [f"runtime.steps_per_call={steps_per_call}"]
    stopped = _cfg(
        tmp_path,
        "run",
        *fused,
        f"+callbacks.stopper._target_={helper}",
        "+callbacks.stopper.step=8",  # mid-epoch 2 of 2
        f"+callbacks.stopper.signum={signum}",
        f"+callbacks.stopper.inside={steps_per_call > 1}",
    )
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(stopped))
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    last = Path(stopped.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert err.startswith(f"error: training stopped by {reason} at step ")
    assert f"saved '{last}'; continue with: ae-train resume=true hydra.run.dir=" in err
    saved_step = load_checkpoint(last)["global_step"]
    if steps_per_call == 1:  # Ctrl-C stops at the end of the step it arrives in or the next
        assert saved_step in (8, 9)
    else:
        assert saved_step == 10

    metrics = train(_cfg(tmp_path, "run", *fused, "resume=true"))["metrics"]
    resumed = _weights(last)
    assert load_checkpoint(last)["global_step"] == 12
    assert _max_diff(resumed, reference["weights"]) <= 1e-6
    # the interrupted epoch's mean covers its batches from before the stop too
    expected = reference["metrics"]["train/loss_epoch"]
    assert metrics["train/loss_epoch"] == pytest.approx(expected, rel=1e-6)


def test_second_ctrl_c_quits_at_once_and_saves_nothing(tmp_path, capsys):
    cfg = _cfg(
        tmp_path,
        "run",
        "+callbacks.stopper._target_=tests.test_resume.SignalAtStep",
        "+callbacks.stopper.step=8",
        "+callbacks.stopper.signum=2",
        "+callbacks.stopper.times=2",
    )
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "error: training stopped by Ctrl-C (forced) at step 8 (epoch 1); nothing was saved at "
        "the stop (a forced stop, or callbacks.resume_checkpoint off)."
    )
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 6  # the end of epoch 1, written before


def test_resume_needs_a_checkpoint_in_the_run_dir(make_cfg, capsys):
    cfg = make_cfg("resume=true")
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: resume=true found no last.ckpt in ") and "hydra.run.dir" in err


def test_resume_and_ckpt_path_together_is_an_error(make_cfg, tmp_path):
    cfg = make_cfg("resume=true", f"ckpt_path={tmp_path / 'x.ckpt'}")
    with pytest.raises(CheckpointError, match=r"either resume=true .* or ckpt_path"):
        train(cfg)


def test_resume_refuses_a_run_with_another_model(tmp_path):
    first = _cfg(tmp_path, "run", "trainer.max_epochs=1", "trainer.limit_train_batches=2")
    train(first)
    changed = _cfg(tmp_path, "run", "resume=true", "net.latent_dim=8")
    with pytest.raises(CheckpointError) as info:
        train(changed)
    assert "was trained with net.latent_dim=20 but this run has net.latent_dim=8" in str(info.value)


def test_last_ckpt_is_the_latest_state_when_val_loss_stops_improving(tmp_path):
    # lr 1e-30 leaves the weights as they are: val/loss never improves after epoch 0, so
    # ModelCheckpoint(save_last=True) alone would leave last.ckpt at step 3
    cfg = _cfg(
        tmp_path,
        "run",
        "noise=none",
        "model.optimizer.lr=1e-30",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
    )
    train(cfg)
    folder = Path(cfg.paths.output_dir) / "checkpoints"
    assert {p.name for p in folder.iterdir()} == {"epoch_000.ckpt", "last.ckpt"}
    assert load_checkpoint(folder / "epoch_000.ckpt")["global_step"] == 3
    assert load_checkpoint(folder / "last.ckpt")["global_step"] == 9


# --------------------------------------------------------------- SIGKILL, real subprocess
def _ae_train(run_dir: Path, root: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aelightning",
            f"hydra.run.dir={run_dir}",
            f"paths.root_dir={root}",
            "data.source=sample",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=3",
            "trainer.deterministic=true",
            "noise=gaussian",
            "test=false",
            "callbacks.rich_progress_bar=null",
            "callbacks.model_summary=null",
            "callbacks.resume_checkpoint.every_n_train_steps=10",
            # the same threads in every run (auto follows the load average, and another
            # thread count may sum a matmul in another order: other bits)
            "runtime.cpu_threads=1",
            *overrides,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call", [1, 8])
def test_sigkill_mid_epoch_2_then_resume_ends_with_the_same_weights(tmp_path, steps_per_call):
    """3 epochs x 32 batches of the bundled sample; SIGKILL at step 45 (epoch 2), after the
    mid-epoch save of step 40; ``resume=true`` in the same run dir finishes the run. With 8
    optimizer steps per Lightning step the kill lands inside a fused group (steps 41-48) and
    the run ends with the bits of the uninterrupted one-step-per-call run."""
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    proc = _ae_train(ref_dir, tmp_path, "runtime.steps_per_call=1")
    assert proc.returncode == 0, proc.stderr[-2000:]

    fused = f"runtime.steps_per_call={steps_per_call}"
    proc = _ae_train(
        run_dir,
        tmp_path,
        fused,
        "+callbacks.killer._target_=tests.test_resume.SignalAtStep",
        "+callbacks.killer.step=45",
        "+callbacks.killer.signum=9",
        f"+callbacks.killer.inside={steps_per_call > 1}",
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 40  # mid-epoch 2: 32 < 40 < 64
    # the log holds what the checkpoint holds: epoch 1's validation loss (written with it)
    assert pd.read_csv(run_dir / "metrics.csv")["val/loss"].notna().sum() == 1

    proc = _ae_train(run_dir, tmp_path, fused, "resume=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference_last = ref_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == load_checkpoint(reference_last)["global_step"]
    if steps_per_call == 1:
        assert _max_diff(_weights(last), _weights(reference_last)) <= 1e-6
    else:
        resumed, reference = _weights(last), _weights(reference_last)
        assert [k for k in reference if not torch.equal(resumed[k], reference[k])] == []

"""The foundation end to end: compose the real config, train on real data, read the files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from aelightning.builders import build_model
from aelightning.cli.train import train
from tests.conftest import ROOT
from tests.tbutil import read_events, scalar_values, session_hparams


def test_two_epochs_lower_val_loss_and_leave_logs_and_checkpoint(make_cfg):
    cfg = make_cfg("trainer.max_epochs=2", "trainer.log_every_n_steps=5")
    result = train(cfg)
    run = Path(cfg.paths.output_dir)

    acc = read_events(run / "tensorboard")
    tags = acc.Tags()
    for tag in (
        "train/loss",
        "train/recon",
        "val/loss",
        "val/psnr",
        "test/loss",
        "test/mse",
        "test/psnr",
    ):
        assert tag in tags["scalars"], tag
    assert "val/reconstructions" in tags["images"]
    val_losses = scalar_values(acc, "val/loss")
    assert len(val_losses) == 2 and val_losses[1] < val_losses[0]
    hparams = session_hparams(acc)  # the axes runs are compared on, beside the final metrics
    assert hparams["net"] == "mlp" and hparams["net.latent_dim"] == 20

    # the data was the real bundled sample, and the summary says so
    assert "sample" in result["data"] and "4,000" in result["data"]
    assert 0 < result["metrics"]["test/mse"] < 0.2 and result["metrics"]["test/psnr"] > 7

    # best checkpoint: safe to load, carries its config, rebuilds the same model
    best = Path(result["best_checkpoint"])
    assert best.parent == run / "checkpoints" and (run / "checkpoints" / "last.ckpt").is_file()
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    config = OmegaConf.create(ckpt["aelightning_config"])
    model = build_model(config, (1, 28, 28))
    model.load_state_dict(ckpt["state_dict"])
    assert (run / "figures" / "reconstructions_epoch001.png").is_file()


def test_epoch_loss_is_the_mean_of_the_step_losses_and_steps_log_at_the_interval(make_cfg):
    """``train/loss_epoch`` is the mean over the epoch's batches (all steps, not only the logged
    ones), and step values reach TensorBoard every ``log_every_n_steps`` steps."""
    every_step = make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=4")
    with open_dict(every_step):
        every_step.trainer.log_every_n_steps = 1
    train(every_step)
    acc = read_events(Path(every_step.paths.output_dir) / "tensorboard")
    steps = scalar_values(acc, "train/loss")
    epochs = scalar_values(acc, "train/loss_epoch")
    assert len(steps) == 8 and len(epochs) == 2  # batches of 128 from 4,000: all full
    assert epochs == pytest.approx([sum(steps[:4]) / 4, sum(steps[4:]) / 4], rel=1e-5)

    sparse = make_cfg("trainer.max_epochs=2", "trainer.limit_train_batches=4")
    with open_dict(sparse):
        sparse.paths.output_dir = str(Path(sparse.paths.output_dir).parent / "sparse")
        sparse.trainer.log_every_n_steps = 3
    train(sparse)
    acc = read_events(Path(sparse.paths.output_dir) / "tensorboard")
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 5]  # global steps 3 and 6
    assert scalar_values(acc, "train/loss_epoch") == pytest.approx(epochs, rel=1e-5)


def _cli(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aelightning",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.root_dir={tmp_path}",
            "data.source=sample",
            *overrides,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bad_value_exits_nonzero_with_one_sentence(tmp_path):
    proc = _cli(tmp_path, "net.latent_dim=0")
    assert proc.returncode == 1
    assert "error: net.latent_dim must be >= 1, got 0." in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_group_option_lists_the_choices(tmp_path):
    proc = _cli(tmp_path, "net=transformer")
    assert proc.returncode != 0
    assert "net/transformer" in proc.stderr and "mlp" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.source=idx"], "data.data_dir"),
        (["ckpt_path=/nonexistent/last.ckpt"], "ckpt_path"),
        (["model.optimizer.lr=-1"], "model.optimizer.lr"),
        (["model.optimizer._target_=torch.optim.Adamm"], "torch.optim.Adamm"),
    ],
)
def test_user_errors_are_reported_without_traceback(make_cfg, capsys, overrides, message):
    from aelightning.cli.reporting import run_reporting_errors

    cfg = make_cfg(*overrides)
    with pytest.raises(SystemExit) as exit_info:
        run_reporting_errors(lambda: train(cfg))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_corrupt_idx_file_is_named(make_cfg, tmp_path):
    from aelightning.errors import DataError

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)
    cfg = make_cfg("data.source=idx")
    with pytest.raises(DataError, match="idx3-ubyte"):
        train(cfg)

"""metrics.csv in every run dir (the curves' source), MLflow and W&B for real, and the errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import lightning as L
import pandas as pd
import pytest
from omegaconf import open_dict

from aelightning.builders import build_loggers
from aelightning.cli.reporting import find_user_error, user_message
from aelightning.cli.train import train
from aelightning.errors import ConfigError
from aelightning.evaluation.history import TrainingHistory
from aelightning.loggers import RunCSVLogger, RunTensorBoardLogger


def test_csv_logger_writes_run_dir_metrics_and_keeps_them_on_resume(tmp_path):
    (tmp_path / ".hydra").mkdir()  # a run dir is never empty: no warning, nothing deleted
    first = RunCSVLogger(str(tmp_path))
    for epoch in range(2):
        first.log_metrics({"lr-Adam": 1e-3 / (epoch + 1)}, step=10 * epoch + 5)
        first.log_metrics({"val/loss": 0.4 / (epoch + 1), "epoch": epoch}, step=10 * epoch + 9)
    first.finalize("success")
    assert first.log_dir.rstrip("/") == str(tmp_path)
    # a resumed session of the same run: re-logs epoch 1 (from last.ckpt) and adds epoch 2
    second = RunCSVLogger(str(tmp_path))
    for epoch in (1, 2):
        second.log_metrics({"val/loss": 0.3 / (epoch + 1), "epoch": epoch}, step=10 * epoch + 9)
        second.log_metrics({"train/loss_epoch": 0.5, "epoch": epoch}, step=10 * epoch + 9)
    second.finalize("success")

    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert frame["val/loss"].notna().sum() == 4
    history = TrainingHistory.from_run_dir(tmp_path)
    assert [x for x, _ in history.val_loss] == [1, 2, 3]
    assert [v for _, v in history.val_loss] == pytest.approx([0.4, 0.15, 0.1])  # last row wins
    assert history.train_loss == [(2, 0.5), (3, 0.5)]
    assert [x for x, _ in history.learning_rates["lr-Adam"]] == [5, 15]
    assert TrainingHistory.from_run_dir(tmp_path / "missing").empty


def _rows(path: Path) -> int:
    return len(pd.read_csv(path)) if path.is_file() else 0


def test_logger_files_are_written_at_most_every_flush_every_s_and_at_once_when_asked(tmp_path):
    (tmp_path / ".hydra").mkdir()
    csv = tmp_path / "metrics.csv"
    logger = RunCSVLogger(str(tmp_path), flush_every_s=3600)
    logger.log_metrics({"train/loss": 0.5}, step=0)
    logger.save()  # the first save writes
    for step in (1, 2):
        logger.log_metrics({"train/loss": 0.4}, step=step)
        logger.save()  # Lightning's save after each logged step: within the interval, waits
    assert _rows(csv) == 1
    logger.save_now()
    assert _rows(csv) == 3
    logger.log_metrics({"train/loss": 0.3}, step=3)
    logger.save()
    assert _rows(csv) == 3
    logger.finalize("success")
    assert _rows(csv) == 4  # nothing lost
    every = RunCSVLogger(str(tmp_path / "every"), flush_every_s=0)  # Lightning's behaviour
    for step in range(3):
        every.log_metrics({"train/loss": 0.5}, step=step)
        every.save()
        assert _rows(tmp_path / "every" / "metrics.csv") == step + 1


@pytest.mark.parametrize("value", [-1, "soon", True])
def test_a_bad_flush_interval_is_one_sentence(tmp_path, value):
    for logger in (RunCSVLogger, RunTensorBoardLogger):
        with pytest.raises(ConfigError, match=r"^a logger's flush_every_s must be a number"):
            logger(str(tmp_path), flush_every_s=value)


class ReadLogAtEpochStart(L.Callback):
    """Test helper: how many validation losses ``metrics.csv`` holds as each epoch starts."""

    seen: ClassVar[list[int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        path = Path(trainer.loggers[0].log_dir) / "metrics.csv"
        rows = pd.read_csv(path) if path.is_file() else pd.DataFrame({"val/loss": []})
        ReadLogAtEpochStart.seen.append(int(rows["val/loss"].notna().sum()))


@pytest.mark.parametrize("resume_checkpoint", [True, False])
def test_the_logs_are_written_with_every_checkpoint(make_cfg, resume_checkpoint):
    """With an hour between writes, metrics.csv holds each epoch's validation loss as the next
    epoch starts: the epoch-end checkpoint wrote it (so a killed run's log keeps every row its
    last checkpoint has); without checkpoints the rows wait for the end of the fit."""
    cfg = make_cfg(
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=csv",
        "logger.csv.flush_every_s=3600",
        "callbacks.model_checkpoint=null",
        *(
            []
            if resume_checkpoint
            else ["callbacks.resume_checkpoint=null", "+trainer.enable_checkpointing=false"]
        ),
    )
    with open_dict(cfg):
        cfg.callbacks.reader = {"_target_": f"{__name__}.ReadLogAtEpochStart"}
    ReadLogAtEpochStart.seen = []
    train(cfg)
    # without checkpoints: the first write (the hyperparameters, at the start), then the end
    assert ReadLogAtEpochStart.seen == ([0, 1, 2] if resume_checkpoint else [0, 0, 0])
    assert pd.read_csv(Path(cfg.paths.output_dir) / "metrics.csv")["val/loss"].notna().sum() == 3


def test_every_logger_config_keeps_metrics_csv(make_cfg):
    for choice, names in [
        ("csv", {"csv"}),
        ("tensorboard", {"csv", "tensorboard"}),
        ("mlflow", {"csv", "mlflow"}),
        ("wandb", {"csv", "wandb"}),
        ("many", {"csv", "tensorboard", "mlflow", "wandb"}),
        ("[tensorboard,mlflow]", {"csv", "tensorboard", "mlflow"}),
        ("none", set()),
    ]:
        assert set(make_cfg(f"logger={choice}").get("logger") or {}) == names, choice


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_sentence(make_cfg, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(Exception) as info:
        build_loggers(make_cfg(f"logger={package}").logger)
    message = user_message(find_user_error(info.value))
    assert message == (
        f"logger={package} needs the {package} package: pip install -e '.[{package}]' "
        f"(or pip install {package})."
    )


def test_training_with_mlflow_logs_params_metrics_and_metrics_csv(make_cfg, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    cfg = make_cfg("logger=many", "logger.wandb=null", "trainer.max_epochs=2", "net.latent_dim=6")
    result = train(cfg)
    run_dir = Path(cfg.paths.output_dir)

    frame = pd.read_csv(run_dir / "metrics.csv")
    assert frame["val/loss"].dropna().size == 2 and frame["test/loss"].dropna().size == 1
    assert (run_dir / "tensorboard").is_dir()
    history = TrainingHistory.from_run_dir(run_dir)
    assert [x for x, _ in history.val_loss] == [1, 2] and [x for x, _ in history.train_loss] == [
        1,
        2,
    ]

    store = Path(cfg.paths.log_dir) / "mlruns" / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("aelightning")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["net/latent_dim"] == "6"  # the whole config, as Lightning flattens it
    assert run.data.metrics["test/loss"] == pytest.approx(result["metrics"]["test/loss"])
    assert run.data.tags["run_dir"] == str(run_dir)
    assert "net.latent_dim=6" in run.info.run_name  # named after the job's overrides


def test_training_with_wandb_offline_writes_a_run_to_sync(make_cfg, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=wandb")
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    offline = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].glob("*.wandb"))
    assert pd.read_csv(run_dir / "metrics.csv")["test/loss"].notna().any()


def test_mlflow_params_drop_hydra_and_replace_refused_characters():
    from aelightning.loggers import mlflow_params

    params = {"hydra": {"job": 1}, "choices": {"gallery@callbacks.figures": "default"}, "seed": 42}
    assert mlflow_params(params) == {
        "choices": {"gallery_callbacks.figures": "default"},
        "seed": 42,
    }

"""Each private Lightning, Hydra and torch name the project reaches through
``aelightning.runtime.lightning_compat`` still exists and still means what the project relies
on, on the installed versions; an upgrade that renames one fails here, by name."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
from hydra.core.utils import JobReturn, JobStatus
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard.summary import hparams

from aelightning.runtime import lightning_compat as compat
from tests.conftest import bare_trainer


class TinyModule(L.LightningModule):
    """A linear map trained on random data; records what the compat accessors say per step."""

    seen: ClassVar[list[tuple[bool, bool]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        trainer = compat.trainer_of(self)
        TinyModule.seen.append((trainer is self.trainer, compat.loggers_write_this_step(trainer)))
        return self.layer(batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(12, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)


def test_installed_lightning_is_the_tested_series() -> None:
    assert compat.lightning_is_tested()
    assert compat.why_lean_hooks_cannot_run() is None  # the three functions are the mirrored ones
    assert not compat.lightning_is_tested("2.7.0") and compat.lightning_is_tested("2.6.9")


def test_trainer_of_and_the_logging_interval(tmp_path: Path) -> None:
    module = TinyModule()
    assert compat.trainer_of(module) is None  # not attached: no error, unlike module.trainer
    assert compat.loggers_write_this_step(None) is True
    trainer = L.Trainer(
        max_steps=6,
        log_every_n_steps=2,
        logger=TensorBoardLogger(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    TinyModule.seen = []
    trainer.fit(module)
    # attached while fitting; the loggers write every second step (and the last, stopping)
    assert [attached for attached, _ in TinyModule.seen] == [True] * 6
    assert [writes for _, writes in TinyModule.seen] == [False, True, False, True, False, True]


def test_blocking_device_types_are_lightnings() -> None:
    # Lightning copies synchronously to these (and with non_blocking=True to CUDA)
    assert set(compat.BLOCKING_DEVICE_TYPES) == {"cpu", "mps"}


def test_local_paths_and_urls(tmp_path: Path) -> None:
    assert compat.is_local_path(tmp_path / "last.ckpt")
    assert compat.is_local_path(str(tmp_path / "last.ckpt"))
    assert not compat.is_local_path("s3://bucket/run/last.ckpt")
    assert compat.is_local_path("file:///tmp/last.ckpt")


def test_pending_loader_states_are_loaded_once() -> None:
    trainer = bare_trainer(1)
    fit_loop = trainer.fit_loop
    assert compat.load_pending_loader_states(fit_loop) is False  # nothing restored
    loaded: list[bool] = []
    fit_loop._combined_loader_states_to_load = [{"saved": 1}]
    fit_loop._load_combined_loader_states = lambda: loaded.append(True)
    fit_loop.restarting = True
    assert compat.load_pending_loader_states(fit_loop) is True and loaded == [True]
    # the name the accessor calls is Lightning's own method
    assert callable(type(fit_loop)._load_combined_loader_states)


def test_tensorboard_file_writer_writes_summaries(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="", version="")
    logger.experiment.close()  # as after a fit: the accessor reopens the writer
    writer = compat.tensorboard_file_writer(logger.experiment)
    for summary in hparams({"lr": 0.1}, {"val/loss": 0.5}):
        writer.add_summary(summary)
    logger.experiment.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(
        events.PluginTagToContent("hparams")
    )


def test_job_exception_of_a_failed_hydra_job() -> None:
    error = ValueError("bad")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_exception(failed) is error
    assert compat.job_exception(JobReturn(status=JobStatus.COMPLETED, _return_value=1.0)) is None


def test_fused_devices_are_torchs() -> None:
    devices = compat.fused_optimizer_devices()
    assert {"cpu", "cuda"} <= set(devices) and "meta" not in devices
    param = nn.Parameter(torch.zeros(2))
    param.grad = torch.ones(2)
    torch.optim.Adam([param], lr=0.5, fused=True).step()
    assert torch.allclose(param.detach(), torch.full((2,), -0.5))


def test_hook_name_is_set_as_nn_module_sets_it() -> None:
    """The lean calls set ``_current_fx_name`` with ``object.__setattr__``: for a value that is
    no parameter, buffer or module that is what ``nn.Module.__setattr__`` ends with."""
    lean, stock = TinyModule(), TinyModule()
    compat._set_plain(lean, "_current_fx_name", "training_step")
    stock._current_fx_name = "training_step"
    assert lean.__dict__.keys() == stock.__dict__.keys()
    assert lean._current_fx_name == stock._current_fx_name == "training_step"
    assert "_current_fx_name" not in lean._modules | lean._parameters | lean._buffers
    assert "_current_fx_name" not in lean.state_dict()

"""Each private Lightning, Hydra and torch name the project reaches through
``aelightning.runtime.lightning_compat`` still exists and still means what the project relies
on, on the installed versions; an upgrade that renames one fails here, by name."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import MixedPrecision
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard.summary import hparams

from aelightning.runtime import lightning_compat as compat
from aelightning.runtime.loop_overhead import NoProfiler
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


# ----------------------------------------------------------------- fused steps (steps_per_call)
class StepRecorder(TinyModule):
    """Records, at each training step, what the fused-steps accessors read from the loop."""

    rows: ClassVar[list[tuple[int, int, int, bool, int]]] = []

    def training_step(self, batch, batch_idx):
        trainer = self.trainer
        loop = trainer.fit_loop.epoch_loop
        StepRecorder.rows.append(
            (
                loop.batch_progress.total.ready,
                loop.batch_progress.current.processed,
                compat.batches_that_stepped(trainer),
                trainer.is_last_batch,
                trainer.fit_loop._data_fetcher.fetched,
            )
        )
        return super().training_step(batch, batch_idx)


def test_batch_counters_advance_as_the_loop_does() -> None:
    """Between two steps the loop moves its counters by exactly what BatchCounters.advance
    moves them by: snapshots of a normal fit, one step apart, differ by one application."""
    StepRecorder.rows = []
    TinyModule.seen = []
    trainer = bare_trainer(max_steps=6)
    trainer.fit(StepRecorder())
    rows = StepRecorder.rows
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[-1][3]  # 6 batches, last flagged

    class Replay(StepRecorder):
        def training_step(self, batch, batch_idx):
            if batch_idx == 0:  # the loop's state at step 0, then moved by hand
                trainer = self.trainer
                counters = compat.BatchCounters(trainer)
                replayed = []
                for _ in range(len(rows)):
                    loop = trainer.fit_loop.epoch_loop
                    replayed.append(
                        (
                            loop.batch_progress.total.ready,
                            loop.batch_progress.current.processed,
                            compat.batches_that_stepped(trainer),
                            trainer.is_last_batch,
                            trainer.fit_loop._data_fetcher.fetched,
                        )
                    )
                    if len(replayed) < len(rows):
                        counters.advance()
                Replay.replayed = replayed
                trainer.should_stop = True
            return TinyModule.training_step(self, batch, batch_idx)

    bare_trainer(max_steps=6).fit(Replay())
    assert Replay.replayed == rows


def test_batch_start_hooks_reach_callbacks_and_module() -> None:
    seen: list[tuple[str, int]] = []

    class Hooked(TinyModule):
        def on_train_batch_start(self, batch, batch_idx):
            seen.append(("module", batch_idx))

        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                compat.call_batch_start_hooks(self.trainer, batch, 7)
            return super().training_step(batch, batch_idx)

    class Callback(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(("callback", batch_idx))

    trainer = bare_trainer(max_steps=1)
    trainer.callbacks.append(Callback())
    trainer.fit(Hooked())
    assert seen == [("callback", 0), ("module", 0), ("callback", 7), ("module", 7)]


def test_checkpoint_every_n_train_steps_is_model_checkpoints() -> None:
    assert compat.checkpoint_every_n_train_steps(L.pytorch.callbacks.ModelCheckpoint()) == 0
    every = L.pytorch.callbacks.ModelCheckpoint(every_n_train_steps=7)
    assert compat.checkpoint_every_n_train_steps(every) == 7
    assert compat.checkpoint_every_n_train_steps(L.Callback()) == 0


def test_carry_optimizer_steps_gives_the_other_mode_the_global_step(tmp_path: Path) -> None:
    trainer = bare_trainer(max_steps=4)
    trainer.fit(TinyModule())
    trainer.save_checkpoint(tmp_path / "auto.ckpt")
    checkpoint = torch.load(tmp_path / "auto.ckpt", weights_only=False)

    class Manual(TinyModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(TinyModule.training_step(self, batch, batch_idx))
            optimizer.step()

        def on_load_checkpoint(self, checkpoint):
            compat.carry_optimizer_steps(checkpoint, manual=True)

    assert compat.carry_optimizer_steps(checkpoint, manual=True)
    assert not compat.carry_optimizer_steps(checkpoint, manual=True)  # already there
    resumed = bare_trainer(max_steps=6)
    resumed.fit(Manual(), ckpt_path=tmp_path / "auto.ckpt", weights_only=False)
    assert resumed.global_step == 6  # 4 restored + 2 more, not 6 more


def test_add_to_mean_adds_what_mean_metric_update_adds() -> None:
    from torchmetrics import MeanMetric

    reference, fast = MeanMetric(nan_strategy="disable"), MeanMetric(nan_strategy="disable")
    for values in (torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.5])):
        reference.update(values)
        compat.add_to_mean(fast, values.sum(), values.numel())
    assert torch.equal(reference.mean_value, fast.mean_value)
    assert torch.equal(reference.weight, fast.weight)
    assert fast.update_count == reference.update_count == 2
    assert torch.equal(reference.compute(), fast.compute())  # 7.5 / 4
    compat.add_to_mean(fast, torch.tensor(3.0), 1)  # compute() is not served stale
    assert fast.compute().item() == pytest.approx(10.5 / 5)


def test_the_lean_manual_step_runs_only_where_it_is_lightnings_own() -> None:
    def trainer(**kw):
        kw = {"accelerator": "cpu", "logger": False, "profiler": NoProfiler(), **kw}
        return L.Trainer(enable_progress_bar=False, enable_model_summary=False, **kw)

    why = compat.why_manual_steps_cannot_be_lean
    assert "hook calls" in why(trainer())  # outside a fit's lean_hooks block
    with compat.lean_hooks():
        assert why(trainer()) is None
        assert why(trainer(precision="bf16-mixed")) is None
        assert "profiler" in why(trainer(profiler="simple"))
        assert why(trainer(precision="16-mixed")) is None  # on a CPU: no loss scaler
        scaled = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
        assert "precision 16-mixed scales the loss" in why(trainer(plugins=[scaled]))
        patched = trainer()
        patched.strategy.backward = lambda *args, **kwargs: None  # e.g. a test's recorder
        assert why(patched) == "SingleDeviceStrategy.backward is replaced on the instance"


def test_a_logged_record_already_on_the_device_is_not_walked_again() -> None:
    from lightning.pytorch.trainer.connectors.logger_connector.result import (
        _Metadata,
        _ResultMetric,
        _Sync,
    )

    meta = _Metadata("training_step", "train/loss", on_step=True, on_epoch=True)
    meta.sync = _Sync()  # as LightningModule.log sets it
    record = _ResultMetric(meta, is_tensor=True)
    record.update(torch.tensor(0.5), 4)
    cpu = torch.device("cpu")
    with compat.lean_hooks():
        assert record.to(cpu) is record and record.meta is meta  # no walk, no copy
        moved = record.to(torch.device("meta"))  # elsewhere: Lightning's own walk
        assert moved.value.device.type == "meta" and moved.meta is not meta
        assert moved.cumulated_batch_size.device.type == "meta"
        assert all(t.device.type == "meta" for t in moved._defaults.values())
        assert compat.lean_hooks_installed()
    assert _ResultMetric.to is compat.STOCK_RESULT_MOVE and not compat.lean_hooks_installed()
    fresh = _ResultMetric(meta, is_tensor=True)
    fresh.to(cpu)
    assert fresh.meta is not meta  # what the stock move does every time: a deep copy

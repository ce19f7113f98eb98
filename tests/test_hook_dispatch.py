"""The lean hook dispatch makes the same calls as Lightning's: the same hooks of the module, the
strategy and every callback, in the same order, with the same ``_current_fx_name``, and so the
same trained weights, in the training (automatic and manual optimisation, accumulated
gradients), validation and test loops; it is in place only during a fit or test, and
Lightning's own functions run whenever a profiler is set or ``runtime.lean_hooks=false``, and
for a Lightning whose functions it does not mirror."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultMetric
from omegaconf import open_dict

from aelightning.checkpointing.checkpoint import load_checkpoint
from aelightning.cli.train import train
from aelightning.runtime import lightning_compat as compat

#: the module's and the strategy's hooks a fit goes through (each one recorded when called)
MODULE_HOOKS = (
    "on_fit_start",
    "on_train_start",
    "on_train_epoch_start",
    "on_train_batch_start",
    "transfer_batch_to_device",
    "on_after_batch_transfer",
    "training_step",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "configure_gradient_clipping",
    "optimizer_step",
    "on_before_zero_grad",
    "optimizer_zero_grad",
    "on_train_batch_end",
    "on_validation_epoch_start",
    "validation_step",
    "on_validation_epoch_end",
    "on_train_epoch_end",
    "on_save_checkpoint",
    "on_fit_end",
    "on_test_start",
    "on_test_epoch_start",
    "on_test_batch_start",
    "test_step",
    "on_test_batch_end",
    "on_test_epoch_end",
    "on_test_end",
)
STRATEGY_HOOKS = ("batch_to_device", "training_step", "validation_step", "test_step", "backward")
CALLBACK_HOOKS = (
    "on_train_epoch_start",
    "on_train_batch_start",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
    "on_train_batch_end",
    "on_validation_batch_end",
    "on_train_epoch_end",
    "on_test_epoch_start",
    "on_test_batch_end",
    "on_test_epoch_end",
)


class HookRecorder(L.Callback):
    """Records, in call order, every hook above with the module's ``_current_fx_name``.

    The module's and the strategy's hooks are wrapped on the instances at the fit's ``setup``
    (before the fit loop starts); its own callback hooks are defined on the class, and one more
    is set on the instance only (the dispatch must find those too). ``dispatch`` is the hook
    caller Lightning's loops saw, per stage.
    """

    calls: ClassVar[list[tuple[str, str, str | None]]] = []
    dispatch: ClassVar[dict[str, object]] = {}
    #: whether the strategy's hooks are wrapped too (a wrapped strategy keeps fused steps on
    #: Lightning's manual_backward / optimizer.step); whether the fit's steps went the lean way
    wrap_strategy: ClassVar[bool] = True
    lean_steps: ClassVar[bool] = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        HookRecorder.dispatch[stage] = call._call_callback_hooks
        if stage != "fit":  # the test after the fit: same module and strategy, wrapped already
            return
        HookRecorder.calls = []
        self._module = pl_module
        wrapped = [("module", pl_module, MODULE_HOOKS)]
        if self.wrap_strategy:
            wrapped.append(("strategy", trainer.strategy, STRATEGY_HOOKS))
        for owner, obj, names in wrapped:
            for name in names:
                object.__setattr__(obj, name, self._recording(owner, name, getattr(obj, name)))
        self.on_validation_epoch_end = functools.partial(self._record, "on_validation_epoch_end")

    def _recording(self, owner: str, name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            module = self._module
            HookRecorder.calls.append((owner, name, getattr(module, "_current_fx_name", None)))
            return fn(*args, **kwargs)

        return wrapper

    def _record(self, name: str, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any):
        HookRecorder.calls.append(("callback", name, pl_module._current_fx_name))
        fused = getattr(pl_module, "fused_steps", None)
        if name == "on_after_backward" and fused is not None and fused.lean is not None:
            HookRecorder.lean_steps = True


for _hook in CALLBACK_HOOKS:
    setattr(
        HookRecorder,
        _hook,
        lambda self, trainer, pl_module, *args, _name=_hook, **kw: self._record(
            _name, trainer, pl_module
        ),
    )


def _fit(make_cfg, name: str, *overrides: str) -> tuple[list[tuple[str, str, str | None]], dict]:
    """Two short epochs with validation and checkpoints, then the test loop, in their own run
    dir; the calls recorded and the trained weights."""
    return _fit_and_log(make_cfg, name, *overrides)[:2]


def _fit_and_log(
    make_cfg, name: str, *overrides: str
) -> tuple[list[tuple[str, str, str | None]], dict, str]:
    """:func:`_fit`, and the run's ``metrics.csv`` (step values every second step)."""
    cfg = make_cfg(
        "test=true",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=2",
        "runtime.cpu_threads=1",
        *overrides,
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(cfg.paths.output_dir).parent / name)
        cfg.callbacks.recorder = {"_target_": f"{__name__}.HookRecorder"}
    HookRecorder.dispatch, HookRecorder.lean_steps = {}, False
    train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    state = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return list(HookRecorder.calls), state["state_dict"], (run_dir / "metrics.csv").read_text()


@pytest.mark.parametrize(
    ("case", "overrides", "expected"),
    [
        (
            "automatic",  # Lightning's own loop: one optimiser step per Lightning step
            ["runtime.steps_per_call=1"],
            {("module", "optimizer_step"), ("callback", "on_before_optimizer_step")},
        ),
        (
            "fused",  # several optimiser steps per Lightning step (manual optimisation)
            ["runtime.steps_per_call=2"],
            {("module", "on_before_optimizer_step"), ("callback", "on_train_batch_start")},
        ),
        (
            "fused-lean",  # the same, the strategy not wrapped: the lean manual step
            ["runtime.steps_per_call=2"],
            {("module", "on_before_optimizer_step"), ("callback", "on_before_backward")},
        ),
        (
            "manual",  # three optimisers stepped by the module itself
            ["model=aae"],
            {("module", "on_before_optimizer_step"), ("callback", "on_before_optimizer_step")},
        ),
        (
            "accumulated",  # 3 batches, 2 steps an epoch
            ["trainer.accumulate_grad_batches=2"],
            {("module", "optimizer_step"), ("callback", "on_before_optimizer_step")},
        ),
    ],
)
def test_lean_dispatch_makes_lightnings_calls_and_trains_the_same_weights(
    make_cfg, case, overrides, expected, monkeypatch
):
    lean_step = case == "fused-lean"
    monkeypatch.setattr(HookRecorder, "wrap_strategy", not lean_step)
    lean_calls, lean_weights, lean_log = _fit_and_log(make_cfg, f"{case}-lean", *overrides)
    # fused steps: LeanManualSteps where nothing replaced the strategy's methods
    assert HookRecorder.lean_steps == lean_step
    # in use for the fit and the test, and Lightning's own functions again afterwards
    assert HookRecorder.dispatch == dict.fromkeys(("fit", "test"), compat.call_callback_hooks)
    assert call._call_callback_hooks is compat.STOCK["_call_callback_hooks"]
    assert _ResultMetric.to is compat.STOCK_RESULT_MOVE
    stock_calls, stock_weights, stock_log = _fit_and_log(
        make_cfg, f"{case}-stock", *overrides, "runtime.lean_hooks=false"
    )
    assert HookRecorder.dispatch == dict.fromkeys(("fit", "test"), call._call_callback_hooks)
    assert not HookRecorder.lean_steps  # Lightning's own hook calls: Lightning's manual step

    assert lean_calls == stock_calls
    recorded = {(owner, name) for owner, name, _ in stock_calls}
    # every kind of hook was seen, each under its own name (callbacks and strategy inside)
    expected = expected | {
        ("module", "training_step"),
        ("callback", "on_validation_epoch_end"),  # the instance's own hook
        ("module", "validation_step"),
        ("callback", "on_test_batch_end"),
    }
    if not lean_step:
        expected |= {("strategy", "backward"), ("strategy", "test_step")}
    assert expected <= recorded
    assert ("callback", "on_train_batch_end", "on_train_batch_end") in stock_calls
    assert ("module", "test_step", "test_step") in stock_calls
    assert lean_weights.keys() == stock_weights.keys()
    assert all(torch.equal(lean_weights[k], stock_weights[k]) for k in lean_weights)
    # the same values logged at the same steps (the lean record move included)
    assert "train/loss" in lean_log and lean_log == stock_log


def test_accumulation_steps_the_optimiser_every_second_batch(make_cfg):
    calls, _ = _fit(make_cfg, "accumulated", "trainer.accumulate_grad_batches=2", "test=false")
    steps = [c for c in calls if c[:2] == ("module", "optimizer_step")]
    batches = [c for c in calls if c[:2] == ("module", "training_step")]
    assert (len(batches), len(steps)) == (6, 4)  # 2 epochs of 3 batches: after 2nd and 3rd


def test_a_profiler_gets_lightnings_dispatch_with_every_callback_named(make_cfg):
    cfg = make_cfg(
        "test=false",
        "trainer.profiler={_target_:lightning.pytorch.profilers.SimpleProfiler,"
        "dirpath:${paths.output_dir},filename:profile}",
    )
    train(cfg)
    report = (Path(cfg.paths.output_dir) / "fit-profile.txt").read_text()
    # Lightning's function profiles every callback, also those without the hook
    assert "[Callback]ModelCheckpoint" in report and "on_train_batch_start" in report


def test_an_unknown_lightning_is_left_as_it_is(monkeypatch, caplog):
    changed = dict(compat.STOCK_PARAMETERS, _call_strategy_hook=("trainer", "hook"))
    monkeypatch.setattr(compat, "STOCK_PARAMETERS", changed)
    with caplog.at_level("WARNING", logger="aelightning"):
        for _ in range(2):
            with compat.lean_hooks() as installed:
                assert installed is False
                assert all(getattr(call, n) is f for n, f in compat.STOCK.items())
    assert len([r for r in caplog.records if "lean_hooks" in r.getMessage()]) == 1  # once
    monkeypatch.undo()
    with compat.lean_hooks() as installed:
        assert installed is True
        assert all(getattr(call, n) is f for n, f in compat.REPLACEMENTS.items())
    assert all(getattr(call, n) is f for n, f in compat.STOCK.items())


def test_another_lightning_series_is_refused(monkeypatch):
    monkeypatch.setattr(compat.lightning, "__version__", "2.7.0")
    assert not compat.lightning_is_tested()
    assert "2.7.0 is not the tested 2.6 series" in str(compat.why_lean_hooks_cannot_run())
    with compat.lean_hooks() as installed:
        assert installed is False
        assert call._call_callback_hooks is compat.STOCK["_call_callback_hooks"]


def test_lean_hooks_are_removed_when_the_fit_fails():
    with pytest.raises(RuntimeError), compat.lean_hooks():
        assert call._call_strategy_hook is compat.call_strategy_hook
        raise RuntimeError("the fit failed")
    assert call._call_strategy_hook is compat.STOCK["_call_strategy_hook"]


@pytest.mark.parametrize("where", ["class", "instance", "none"])
def test_callbacks_are_called_exactly_when_they_define_the_hook(where):
    class Mine(L.Callback):
        pass

    if where == "class":
        Mine.on_train_batch_end = lambda self, *a: None
    mine = Mine()
    if where == "instance":
        mine.on_train_batch_end = lambda *a: None
    with_hook = compat.callbacks_with_hook([mine], "on_train_batch_end")
    assert (with_hook == [mine]) is (where != "none")
    # a hook Callback lacks counts as its own
    assert compat.callbacks_with_hook([mine], "a_hook_callback_lacks") == [mine]


def test_monitoring_callbacks_are_lightnings_two_kinds():
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    class Plain(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            pass

    kinds = [ModelCheckpoint(), Plain(), EarlyStopping(monitor="val/loss")]
    hook = "on_validation_end"  # all three define it
    assert compat.callbacks_with_hook(kinds, hook) == kinds
    assert compat.callbacks_with_hook(kinds, hook, True) == [kinds[0], kinds[2]]
    assert compat.callbacks_with_hook(kinds, hook, False) == [kinds[1]]

"""Every private name of Lightning, Hydra (and torch) the project relies on, in one module.

Private names change between minor releases without notice, so they are reached only from
here, each with a test in ``tests/test_lightning_compat.py``, and ``pyproject.toml`` bounds
Lightning to the series those tests ran on (:data:`TESTED_LIGHTNING`). Two kinds:

- **accessors**: trainer state Lightning has no public name for (whether the loggers write
  this step, a loader state it forgot to restore, the TensorBoard file writer), Lightning's
  own helpers (which devices copy synchronously, which paths are local), a failed Hydra job's
  exception, the devices torch has fused optimiser steps for;
- **the lean hook calls**: :func:`lean_hooks` swaps Lightning's three hook-calling functions
  for versions without the work that cannot change anything, for one fit or test, and with
  them the move of a logged value's record to the value's device (:func:`move_result`);
- **the lean manual step**: :class:`LeanManualSteps`, ``manual_backward`` and
  ``LightningOptimizer.step`` for one device in 32-bit or bf16 precision, the same hooks and
  counts without the strategy / precision-plugin / closure chain (fused optimiser steps).

The lean hook calls: Lightning calls its hooks through three functions in
``lightning.pytorch.trainer.call``. Each call formats a debug message, looks
``trainer.lightning_module`` up through the strategy and opens a profiler context named after
the hook; the callback one does so for every callback, whether or not it has the hook, and
asks each for its ``state_key`` (``ModelCheckpoint`` builds it from a repr of its settings).
With six per-step callback hooks, ten callbacks and sixteen module and strategy hooks that was
~650 of the ~2,350 Python calls of a training step of the seeds' MLP (measured with cProfile),
most of them reaching ``Callback``'s empty methods. The replacements make the same calls in
the same order, with the same arguments and ``_current_fx_name`` (set as ``nn.Module`` would
set a plain attribute, without its registry checks), minus the profiler contexts, the debug
messages and the callbacks that do not define the hook. They do so only while the trainer's
profiler is :class:`~aelightning.runtime.loop_overhead.NoProfiler` (``train`` gives it one
when ``trainer.profiler`` is null); with any other profiler Lightning's own functions run, so
a profile still names every hook.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import lightning
import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.apply_func import _BLOCKING_DEVICE_TYPES
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import _Metadata, _ResultMetric
from packaging.version import Version
from torch import Tensor
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from aelightning.runtime.loop_overhead import NoProfiler

log = logging.getLogger("aelightning")

#: the Lightning minor series this module was written and tested against
TESTED_LIGHTNING = (2, 6)


def lightning_is_tested(version: str | None = None) -> bool:
    """Whether ``version`` (the installed Lightning's by default) is of the tested series."""
    return Version(version or lightning.__version__).release[:2] == TESTED_LIGHTNING


# ------------------------------------------------------------------------------ accessors
#: device types to which Lightning copies batches synchronously (``non_blocking=False``)
BLOCKING_DEVICE_TYPES: tuple[str, ...] = tuple(_BLOCKING_DEVICE_TYPES)


def is_local_path(path: Any) -> bool:
    """Whether ``path`` is on the local file system (not ``s3://``, ``gs://``, ...)."""
    return _is_local_file_protocol(path)


def trainer_of(module: pl.LightningModule) -> pl.Trainer | None:
    """The trainer ``module`` is attached to, or None (``module.trainer`` raises instead)."""
    return module._trainer


def loggers_write_this_step(trainer: pl.Trainer | None) -> bool:
    """Whether the loggers will write this step's ``on_step`` values (every
    ``trainer.log_every_n_steps`` batches, and when training stops); True without a trainer."""
    connector = getattr(trainer, "_logger_connector", None)
    return connector is None or bool(connector.should_update_logs)


def load_pending_loader_states(fit_loop: Any) -> bool:
    """Hand the train loader the state a restored checkpoint holds for it, if Lightning has
    not yet (Lightning issue #20550); True when it did so here."""
    if not (getattr(fit_loop, "_combined_loader_states_to_load", None) and fit_loop.restarting):
        return False
    fit_loop._load_combined_loader_states()
    return True


def tensorboard_file_writer(experiment: Any) -> Any:
    """The event-file writer of a ``SummaryWriter`` (a ``TensorBoardLogger.experiment``), for
    summaries it has no ``add_*`` method for; it reopens a closed writer."""
    return experiment._get_file_writer()


def job_exception(job_return: Any) -> BaseException | None:
    """The exception a failed Hydra job raised (``JobReturn.return_value`` re-raises it)."""
    value = job_return._return_value
    return value if isinstance(value, BaseException) else None


def fused_optimizer_devices() -> tuple[str, ...]:
    """Device types on which torch's Adam, AdamW and SGD have a ``fused=True`` step."""
    return tuple(_get_fused_kernels_supported_devices())


# --------------------------------------------------------------------------- fused steps
# Several optimiser steps in one Lightning step (aelightning.runtime.fused_steps): between two
# of them the loop's counters move as Lightning's own loop would move them between two steps.
#: a checkpoint's fit-loop keys holding the optimiser step counts of each optimisation mode
_AUTOMATIC_STEPS = "epoch_loop.automatic_optimization.optim_progress"
_MANUAL_STEPS = "epoch_loop.manual_optimization.optim_step_progress"


def batches_that_stepped(trainer: pl.Trainer) -> int:
    """The step axis the loggers write (``log_every_n_steps`` counts it): batches that
    stepped the optimiser so far in the fit."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


class BatchCounters:
    """The fit loop's batch counters, looked up once per Lightning step (fused steps)."""

    def __init__(self, trainer: pl.Trainer) -> None:
        fit_loop = trainer.fit_loop
        self._loop = fit_loop.epoch_loop
        self._progress = self._loop.batch_progress
        self._trackers = (self._progress.total, self._progress.current)
        self._fetcher = fit_loop._data_fetcher

    def advance(self) -> None:
        """Move the counters from one batch to the next, as the loop's ``advance`` does
        between two batches: the previous batch processed and completed (and stepped, for the
        loggers), the next one fetched, ready and started, ``is_last_batch`` recomputed. Only
        valid inside a training step of a fit without gradient accumulation."""
        for tracker in self._trackers:  # the four increment_* calls' fields, directly
            tracker.processed += 1
            tracker.completed += 1
            tracker.ready += 1
            tracker.started += 1
        self._loop._batches_that_stepped += 1
        fetcher = self._fetcher
        fetcher.fetched += 1
        if fetcher.length is not None:
            fetcher.done = fetcher.fetched >= fetcher.length
        self._progress.is_last_batch = fetcher.done


def call_batch_start_hooks(trainer: pl.Trainer, batch: Any, batch_idx: int) -> None:
    """The callbacks' and the module's ``on_train_batch_start``, as the loop calls them before
    a training step (through the lean versions while :func:`lean_hooks` is active)."""
    call._call_callback_hooks(trainer, "on_train_batch_start", batch, batch_idx)
    call._call_lightning_module_hook(trainer, "on_train_batch_start", batch, batch_idx)


def checkpoint_every_n_train_steps(callback: Callback) -> int:
    """A ``ModelCheckpoint``'s ``every_n_train_steps`` (0: none); 0 for other callbacks."""
    if isinstance(callback, pl.callbacks.ModelCheckpoint):
        return int(callback._every_n_train_steps or 0)
    return 0


def carry_optimizer_steps(checkpoint: dict[str, Any], manual: bool) -> bool:
    """Make a checkpoint written in the other optimisation mode give the same
    ``global_step`` in this one: Lightning counts automatic and manual optimiser steps in
    separate progress records and reads only the current mode's. True when it copied."""
    loop = checkpoint.get("loops", {}).get("fit_loop")
    if not loop or _AUTOMATIC_STEPS not in loop or _MANUAL_STEPS not in loop:
        return False
    automatic = loop[_AUTOMATIC_STEPS]["optimizer"]["step"]
    source, target = (
        (automatic, loop[_MANUAL_STEPS]) if manual else (loop[_MANUAL_STEPS], automatic)
    )
    if target["total"]["completed"] or not source["total"]["completed"]:
        return False
    for key in ("total", "current"):
        target[key] = dict(source[key])
    return True


def add_to_mean(metric: Any, total: Any, count: int) -> None:
    """Add ``count`` samples summing to ``total`` to a torchmetrics ``MeanMetric`` (with
    ``nan_strategy="disable"``): what its ``update`` adds to its states, as two in-place
    operations, without the ~100 microseconds of Python its update wrapper and input checks cost
    per call (a training step of a small MLP is ~2 ms)."""
    _set_plain(metric, "_computed", None)  # plain attributes: no nn.Module registry checks
    _set_plain(metric, "_update_count", metric._update_count + 1)
    metric.mean_value.add_(total)
    metric.weight.add_(count)


# ---------------------------------------------------------------------- lean manual step
def why_manual_steps_cannot_be_lean(trainer: pl.Trainer) -> str | None:
    """None when :class:`LeanManualSteps` does exactly what Lightning's manual step does in
    ``trainer``, else why not."""
    if not lean_hooks_installed():
        return "Lightning's own hook calls are in use (runtime.lean_hooks=false or untested)"
    if not isinstance(trainer.profiler, NoProfiler):
        return "a profiler is configured (it times every hook under its Lightning name)"
    if type(trainer.strategy) is not SingleDeviceStrategy:
        return f"the {type(trainer.strategy).__name__} reduces gradients in its backward"
    plugin = trainer.precision_plugin
    if not (
        type(plugin) is Precision or (type(plugin) is MixedPrecision and plugin.scaler is None)
    ):
        return f"precision {trainer.precision} scales the loss or wraps the optimiser step"
    for owner in (trainer.strategy, plugin):
        replaced = sorted(set(vars(owner)) & _MANUAL_STEP_METHODS)
        if replaced:
            return f"{type(owner).__name__}.{replaced[0]} is replaced on the instance"
    return None


#: the strategy's and precision plugin's methods a manual step goes through
_MANUAL_STEP_METHODS = {"pre_backward", "backward", "post_backward", "optimizer_step"}


class LeanManualSteps:
    """``manual_backward`` and ``LightningOptimizer.step`` as Lightning runs them on one device
    in ``32-true`` / ``bf16-mixed`` (see :func:`why_manual_steps_cannot_be_lean`), called
    directly: the ``on_before_backward`` hooks, the module's ``backward``, the
    ``on_after_backward`` hooks; the manual loop's optimiser-step count made ready, the
    optimiser's step with the ``on_before_optimizer_step`` hooks as its closure (where
    Lightning's precision plugin calls them), the count completed. Lightning gets there through
    the strategy, the precision plugin, a wrapped closure and the manual loop's callbacks:
    ~40 Python calls a step that the seeds' MLP at batch 32 notices. The callbacks that have
    each hook are looked up once, when the fit starts (the list of callbacks does not change
    during a fit)."""

    HOOKS = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")

    def __init__(self, trainer: pl.Trainer) -> None:
        module = trainer.lightning_module
        self._module = module
        self._calls = {hook: self._hook_calls(trainer, module, hook) for hook in self.HOOKS}
        progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        self._counts = (progress.total, progress.current)
        #: the module's own backward, or None for LightningModule's (``loss.backward()``)
        overridden = type(module).backward is not pl.LightningModule.backward
        self._backward = module.backward if overridden or "backward" in vars(module) else None
        self._closures: dict[int, Callable[[], None] | None] = {}

    @staticmethod
    def _hook_calls(
        trainer: pl.Trainer, module: pl.LightningModule, hook: str
    ) -> list[Callable[..., Any]]:
        calls: list[Callable[..., Any]] = [
            partial(getattr(cb, hook), trainer, module)
            for cb in callbacks_with_hook(trainer.callbacks, hook)
        ]
        if getattr(type(module), hook) is not getattr(pl.LightningModule, hook) or (
            hook in module.__dict__
        ):
            calls.append(getattr(module, hook))
        return calls

    def _run(self, hook: str, *args: Any) -> None:
        calls = self._calls[hook]
        if not calls:
            return
        module = self._module
        previous = module._current_fx_name
        _set_plain(module, "_current_fx_name", hook)
        for fn in calls:
            fn(*args)
        _set_plain(module, "_current_fx_name", previous)

    def backward(self, loss: Any) -> None:
        """What ``module.manual_backward(loss)`` does here."""
        calls = self._calls
        if calls["on_before_backward"]:
            self._run("on_before_backward", loss)
        if self._backward is None:
            loss.backward()
        else:
            self._backward(loss)
        if calls["on_after_backward"]:
            self._run("on_after_backward")

    def step(self, optimizer: Any) -> None:
        """What ``optimizer.step()`` does here for a ``LightningOptimizer`` (or the raw torch
        optimizer it wraps) inside a manual training step: the manual loop's optimiser-step
        count made ready, the step (its closure the ``on_before_optimizer_step`` hooks, where
        there are any), the count completed."""
        raw = getattr(optimizer, "optimizer", optimizer)
        key = id(raw)
        if key not in self._closures:
            hooks = self._calls["on_before_optimizer_step"]
            self._closures[key] = (
                partial(self._run, "on_before_optimizer_step", raw) if hooks else None
            )
        total, current = self._counts
        total.ready += 1  # the manual loop's increment_ready
        current.ready += 1
        raw.step(closure=self._closures[key])
        total.completed += 1  # and its increment_completed
        current.completed += 1


# ------------------------------------------------------------------------ lean hook calls
#: Lightning's own functions, and the parameters the replacements mirror
STOCK: dict[str, Callable[..., Any]] = {
    "_call_callback_hooks": call._call_callback_hooks,
    "_call_lightning_module_hook": call._call_lightning_module_hook,
    "_call_strategy_hook": call._call_strategy_hook,
}
STOCK_PARAMETERS = {
    "_call_callback_hooks": ("trainer", "hook_name", "args", "monitoring_callbacks", "kwargs"),
    "_call_lightning_module_hook": ("trainer", "hook_name", "args", "pl_module", "kwargs"),
    "_call_strategy_hook": ("trainer", "hook_name", "args", "kwargs"),
}

#: what nn.Module.__setattr__ ends with for a value that is no parameter, buffer or module
_set_plain = object.__setattr__


@functools.cache
def class_defines_hook(cls: type, hook_name: str) -> bool:
    """Whether callbacks of ``cls`` have their own ``hook_name``, not ``Callback``'s empty
    one; a hook ``Callback`` does not have counts as their own."""
    base = getattr(Callback, hook_name, None)
    return base is None or getattr(cls, hook_name, None) is not base


def callbacks_with_hook(
    callbacks: list[Callback], hook_name: str, monitoring_callbacks: bool | None = None
) -> list[Callback]:
    """The callbacks that have their own ``hook_name`` (their class's, or set on the
    instance), in order; ``monitoring_callbacks`` True keeps only early stopping and
    checkpoints, False all but them (Lightning's two filters)."""
    return [
        cb
        for cb in callbacks
        if (class_defines_hook(type(cb), hook_name) or hook_name in cb.__dict__)
        and (
            monitoring_callbacks is None
            or isinstance(cb, (EarlyStopping, Checkpoint)) == monitoring_callbacks
        )
    ]


def call_callback_hooks(
    trainer: pl.Trainer,
    hook_name: str,
    *args: Any,
    monitoring_callbacks: bool | None = None,
    **kwargs: Any,
) -> None:
    """``_call_callback_hooks``, calling only the callbacks that define the hook."""
    if not isinstance(trainer.profiler, NoProfiler):
        STOCK["_call_callback_hooks"](
            trainer, hook_name, *args, monitoring_callbacks=monitoring_callbacks, **kwargs
        )
        return
    callbacks = callbacks_with_hook(trainer.callbacks, hook_name, monitoring_callbacks)
    if not callbacks:
        return
    pl_module = trainer.lightning_module
    if pl_module:
        prev_fx_name = pl_module._current_fx_name
        _set_plain(pl_module, "_current_fx_name", hook_name)
    for callback in callbacks:
        fn = getattr(callback, hook_name)
        if callable(fn):
            fn(trainer, pl_module, *args, **kwargs)
    if pl_module:
        _set_plain(pl_module, "_current_fx_name", prev_fx_name)


def call_lightning_module_hook(
    trainer: pl.Trainer,
    hook_name: str,
    *args: Any,
    pl_module: pl.LightningModule | None = None,
    **kwargs: Any,
) -> Any:
    """``_call_lightning_module_hook`` without the profiler context and debug message."""
    if not isinstance(trainer.profiler, NoProfiler):
        return STOCK["_call_lightning_module_hook"](
            trainer, hook_name, *args, pl_module=pl_module, **kwargs
        )
    pl_module = pl_module or trainer.lightning_module
    if pl_module is None:
        raise TypeError("No `LightningModule` is available to call hooks on.")
    fn = getattr(pl_module, hook_name)
    if not callable(fn):
        return None
    prev_fx_name = pl_module._current_fx_name
    _set_plain(pl_module, "_current_fx_name", hook_name)
    output = fn(*args, **kwargs)
    _set_plain(pl_module, "_current_fx_name", prev_fx_name)
    return output


def call_strategy_hook(trainer: pl.Trainer, hook_name: str, *args: Any, **kwargs: Any) -> Any:
    """``_call_strategy_hook`` without the profiler context and debug message."""
    if not isinstance(trainer.profiler, NoProfiler):
        return STOCK["_call_strategy_hook"](trainer, hook_name, *args, **kwargs)
    pl_module = trainer.lightning_module
    prev_fx_name = pl_module._current_fx_name
    _set_plain(pl_module, "_current_fx_name", hook_name)
    fn = getattr(trainer.strategy, hook_name)
    if not callable(fn):
        return None
    output = fn(*args, **kwargs)
    _set_plain(pl_module, "_current_fx_name", prev_fx_name)
    return output


REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "_call_callback_hooks": call_callback_hooks,
    "_call_lightning_module_hook": call_lightning_module_hook,
    "_call_strategy_hook": call_strategy_hook,
}


# ------------------------------------------------------------------ lean result move
#: Lightning's own ``_ResultMetric.to``
STOCK_RESULT_MOVE: Callable[..., Any] = _ResultMetric.to


def move_result(self: _ResultMetric, *args: Any, **kwargs: Any) -> _ResultMetric:
    """``_ResultMetric.to``, returning at once when every tensor of the record is already on
    the device.

    Every ``self.log`` moves the value's record to the value's device with Lightning's generic
    walk over the record's ``__dict__`` (some fifty attributes, and a deep copy of its
    metadata dataclass): ~0.3 ms of Python per logged value, measured in a fit, for a record
    that is already there at every call but the first. Anything else (another device, a
    dtype, a nested metric or dataclass) takes Lightning's walk."""
    on_device = len(args) == 1 and not kwargs and type(args[0]) is torch.device
    if on_device and _tensors_all_on(self.__dict__.values(), args[0]):
        return self
    return STOCK_RESULT_MOVE(self, *args, **kwargs)


def _tensors_all_on(values: Any, device: torch.device, nested: bool = True) -> bool:
    for value in values:
        if isinstance(value, Tensor):
            if value.device != device:
                return False
        elif isinstance(value, (dict, list, tuple)) and value:
            if not nested:  # deeper than Lightning's records hold tensors: its own walk
                return False
            inner = value.values() if isinstance(value, dict) else value
            if not _tensors_all_on(inner, device, nested=False):
                return False
        elif isinstance(value, (torch.nn.Module, _ResultMetric)) or (
            dataclasses.is_dataclass(value) and type(value) is not _Metadata
        ):
            return False
    return True


def lean_hooks_installed() -> bool:
    """Whether Lightning's hook calls go through the lean versions now (:func:`lean_hooks`)."""
    return (
        all(getattr(call, name) is fn for name, fn in REPLACEMENTS.items())
        and _ResultMetric.to is move_result
    )


def why_lean_hooks_cannot_run() -> str | None:
    """None when the installed Lightning is the one the replacements mirror, else why not."""
    if not lightning_is_tested():
        tested = ".".join(map(str, TESTED_LIGHTNING))
        return f"Lightning {lightning.__version__} is not the tested {tested} series"
    for name, parameters in STOCK_PARAMETERS.items():
        if tuple(inspect.signature(STOCK[name]).parameters) != parameters:
            return f"Lightning's {name} takes other parameters than the ones mirrored"
    return None


@functools.cache
def _say_once(reason: str) -> None:
    log.warning("runtime.lean_hooks: %s; Lightning's own hook calls are used.", reason)


@contextlib.contextmanager
def lean_hooks(enabled: bool = True) -> Iterator[bool]:
    """Route Lightning's hook calls through the lean versions while the block runs (a fit or
    a test); yields whether they are in use. On a Lightning they do not mirror they are not
    installed, and the log says so once per process."""
    if not enabled:
        yield False
        return
    reason = why_lean_hooks_cannot_run()
    if reason is not None:
        _say_once(reason)
        yield False
        return
    previous = {name: getattr(call, name) for name in REPLACEMENTS}
    previous_move = _ResultMetric.to
    for name, replacement in REPLACEMENTS.items():
        setattr(call, name, replacement)
    _ResultMetric.to = move_result  # type: ignore[method-assign]
    try:
        yield True
    finally:
        for name, function in previous.items():
            setattr(call, name, function)
        _ResultMetric.to = previous_move  # type: ignore[method-assign]

"""Lightning's hook calls without the work that cannot change anything, for unprofiled runs.

Lightning calls its hooks through three functions in ``lightning.pytorch.trainer.call``. Each
call formats a debug message, looks ``trainer.lightning_module`` up through the strategy and
opens a profiler context named after the hook; the callback one does so for every callback,
whether or not it has the hook, and asks each for its ``state_key`` (``ModelCheckpoint``
builds it from a repr of its settings). With six per-step callback hooks, ten callbacks and
sixteen module and strategy hooks that was ~650 of the ~2,350 Python calls of a training
step of the seeds' MLP (measured with cProfile), most of them reaching ``Callback``'s empty
methods.

:func:`install` replaces the three with versions that do the same calls in the same order,
with the same arguments and ``_current_fx_name``, minus the profiler contexts and debug
messages and minus the callbacks that do not define the hook. They do so only while the
trainer's profiler is :class:`~aelightning.runtime.loop_overhead.NoProfiler` (``train`` gives it one
when ``trainer.profiler`` is null); with any other profiler Lightning's own functions run, so
a profile still names every hook. Installing is all or nothing and is skipped for a Lightning
whose functions take other parameters than the ones mirrored here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Checkpoint, EarlyStopping
from lightning.pytorch.trainer import call

from aelightning.runtime.loop_overhead import NoProfiler

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
        pl_module._current_fx_name = hook_name
    for callback in callbacks:
        fn = getattr(callback, hook_name)
        if callable(fn):
            fn(trainer, pl_module, *args, **kwargs)
    if pl_module:
        pl_module._current_fx_name = prev_fx_name


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
    pl_module._current_fx_name = hook_name
    output = fn(*args, **kwargs)
    pl_module._current_fx_name = prev_fx_name
    return output


def call_strategy_hook(trainer: pl.Trainer, hook_name: str, *args: Any, **kwargs: Any) -> Any:
    """``_call_strategy_hook`` without the profiler context and debug message."""
    if not isinstance(trainer.profiler, NoProfiler):
        return STOCK["_call_strategy_hook"](trainer, hook_name, *args, **kwargs)
    pl_module = trainer.lightning_module
    prev_fx_name = pl_module._current_fx_name
    pl_module._current_fx_name = hook_name
    fn = getattr(trainer.strategy, hook_name)
    if not callable(fn):
        return None
    output = fn(*args, **kwargs)
    pl_module._current_fx_name = prev_fx_name
    return output


REPLACEMENTS: dict[str, Callable[..., Any]] = {
    "_call_callback_hooks": call_callback_hooks,
    "_call_lightning_module_hook": call_lightning_module_hook,
    "_call_strategy_hook": call_strategy_hook,
}


def mirrors_installed_lightning() -> bool:
    """Whether Lightning's three functions take exactly the parameters mirrored here."""
    return all(
        tuple(inspect.signature(STOCK[name]).parameters) == STOCK_PARAMETERS[name]
        for name in REPLACEMENTS
    )


def install() -> bool:
    """Route Lightning's hook calls through this module (idempotent). False, and Lightning
    left as it is, when its functions are not the ones mirrored here."""
    if not mirrors_installed_lightning():
        return False
    for name, replacement in REPLACEMENTS.items():
        setattr(call, name, replacement)
    return True


def uninstall() -> None:
    """Lightning's own functions again (tests compare the two)."""
    for name, stock in STOCK.items():
        setattr(call, name, stock)

"""Cheaper pieces of Lightning's per-step machinery that change nothing a run computes.

Lightning calls about thirty hooks per training step (the module's and every callback's), and
wraps each in ``trainer.profiler.profile(name)``. Without a profiler that is
``PassThroughProfiler``, whose ``profile`` is a ``@contextmanager`` generator: five Python
calls to do nothing, ~130 times a step (measured: a sixth of the loop's Python calls for the
seeds' MLP). :class:`NoProfiler` returns one shared, reusable null context instead.

Each of those hooks also sets ``pl_module._current_fx_name`` twice, through
``nn.Module.__setattr__``, which checks whether the value is a parameter, buffer or submodule
(eight Python calls). :class:`PlainAttributes` lets a module name attributes that never are.

How Lightning calls the hooks themselves is :mod:`aelightning.runtime.hook_dispatch`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler
from torch import nn

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """The trainer's profiler when none is configured: records nothing, costs one call."""

    def profile(self, action_name: str) -> Any:  # type: ignore[override]
        return _NOTHING


def profiler_override(configured: Any) -> dict[str, Any]:
    """Extra ``Trainer`` arguments: :class:`NoProfiler` when ``trainer.profiler`` is null."""
    return {"profiler": NoProfiler()} if configured is None else {}


class PlainAttributes(nn.Module):
    """Mixin: attributes listed in ``plain_attributes`` are set like any Python attribute.

    Only for names that never hold a parameter, buffer or submodule (``nn.Module`` would file
    those in its registries); the result is the same as ``nn.Module.__setattr__``'s.
    """

    plain_attributes: frozenset[str] = frozenset({"_current_fx_name"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.plain_attributes:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

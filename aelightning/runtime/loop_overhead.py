"""Cheaper pieces of Lightning's per-step machinery that change nothing a run computes.

Lightning calls about thirty hooks per training step (the module's and every callback's), and
wraps each in ``trainer.profiler.profile(name)``. Without a profiler that is
``PassThroughProfiler``, whose ``profile`` is a ``@contextmanager`` generator: five Python
calls to do nothing, ~130 times a step (measured: a sixth of the loop's Python calls for the
seeds' MLP). :class:`NoProfiler` returns one shared, reusable null context instead.

How Lightning calls the hooks themselves is :func:`aelightning.runtime.lightning_compat.lean_hooks`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lightning.pytorch.profilers import PassThroughProfiler

_NOTHING = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """The trainer's profiler when none is configured: records nothing, costs one call."""

    def profile(self, action_name: str) -> Any:  # type: ignore[override]
        return _NOTHING


def profiler_override(configured: Any) -> dict[str, Any]:
    """Extra ``Trainer`` arguments: :class:`NoProfiler` when ``trainer.profiler`` is null."""
    return {"profiler": NoProfiler()} if configured is None else {}

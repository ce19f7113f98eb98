"""Report mistakes a user can make as one sentence and a non-zero exit, not a traceback."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from typing import TypeVar

from hydra.errors import InstantiationException

from aelightning.errors import AELightningError

T = TypeVar("T")
log = logging.getLogger("aelightning")


def find_user_error(exc: BaseException) -> BaseException | None:
    """The project error behind ``exc`` (Hydra wraps constructor errors), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, AELightningError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return exc if isinstance(exc, InstantiationException) else None


def run_reporting_errors(task: Callable[[], T], exit_code: int = 1) -> T:
    """Run ``task``; on a user error print ``error: <sentence>`` and exit with ``exit_code``.

    ``HYDRA_FULL_ERROR=1`` re-raises so the full traceback is shown.
    """
    try:
        return task()
    except Exception as exc:
        user_error = find_user_error(exc)
        if user_error is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        message = user_message(user_error)
        log.error(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        if _in_multirun():
            raise  # let the sweep mark this job failed and go on with the others
        # an interrupted run exits 130 / 143 like a shell-killed process
        raise SystemExit(getattr(user_error, "exit_code", exit_code)) from None


def user_message(error: BaseException) -> str:
    """One sentence for ``error``; Hydra's instantiation errors are rephrased to name the key."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    if not isinstance(error, InstantiationException):
        return first
    key = re.search(r"^full_key: (\S+)$", text, re.MULTILINE)
    node = key.group(1) if key else "a config entry"
    missing = re.search(r"Error locating target '([^']+)'", text)
    if missing:
        hint = (
            "e.g. torch.optim.Adam, torch.optim.AdamW or torch.optim.SGD"
            if node.startswith("model.optimizer")
            else "check the module path and the name"
        )
        return (
            f"{node}._target_={missing.group(1)!r} cannot be imported (no such class or "
            f"function); {hint}."
        )
    failed = re.search(r"Error in call to target '([^']+)'", text)
    if failed and error.__cause__ is not None:
        cause = (str(error.__cause__).strip().splitlines() or [""])[0]
        return f"{node} ({failed.group(1)}) rejected its config: {cause}"
    return first


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN

"""Report mistakes a user can make as one sentence and a non-zero exit, not a traceback."""

from __future__ import annotations

import logging
import os
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
        message = str(user_error).strip().splitlines()[0]
        log.error(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(exit_code) from None

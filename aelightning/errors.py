"""Project exceptions: mistakes a user can cause, reported as one clear sentence.

The CLI catches :class:`AELightningError` and prints its message without a traceback
(set ``HYDRA_FULL_ERROR=1`` to see the traceback anyway).
"""

from __future__ import annotations


class AELightningError(Exception):
    """Base class for errors caused by user input (config, data, checkpoints)."""


class ConfigError(AELightningError, ValueError):
    """A config value is invalid; the message names the key and the allowed values."""


class DataError(AELightningError):
    """Data is missing, corrupt or inconsistent; the message names the file or folder."""


class CheckpointError(AELightningError):
    """A checkpoint is missing or cannot be loaded safely."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)

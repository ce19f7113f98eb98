"""Checkpoints that are never half-written and never run code when loaded.

* Saving: :class:`AtomicCheckpointIO` (passed to the Trainer as a plugin) writes a checkpoint to a
  temporary file in the target's own folder, fsyncs it and renames it into place with
  ``os.replace``. A crash, a full disk or a SIGKILL in the middle of a save leaves the previous
  checkpoint untouched (Lightning's own writer stages the file in the system temp dir and moves
  it, which is a copy, not a rename, when /tmp is another file system).
* Loading: :func:`load_checkpoint` always uses ``torch.load(weights_only=True)``. A file whose
  unpickling would import or call anything outside torch's allow-list (plus
  :data:`SAFE_GLOBALS`) is refused with a :class:`CheckpointError` before any of it runs.
* Rebuilding: :func:`load_model_from_checkpoint` rebuilds the model from the config stored in
  the checkpoint (``aelightning_config``) through :func:`aelightning.builders.build_model`.
* Resuming: :func:`resolve_ckpt_path` turns ``resume=true`` / ``ckpt_path=...`` into the file
  to continue from, and refuses a checkpoint whose model, noise or data differ from the config.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from aelightning.checkpointing.atomic import atomic_file
from aelightning.errors import CheckpointError
from aelightning.runtime.lightning_compat import is_local_path

log = logging.getLogger("aelightning")

#: a checkpoint's location: a local path or a URL (as Lightning's ``_PATH``)
_PATH = str | os.PathLike[str]

#: Extra classes/functions a checkpoint may reference. Nothing of the project's is pickled into
#: checkpoints today (the config is stored as plain dicts, RNG states as tensors and ints; a test
#: loads a full training checkpoint with this list empty); add a type here only if it is a plain
#: data holder whose construction cannot run code.
SAFE_GLOBALS: list[Any] = []

#: config groups that define the trained model and its batches: a resume must match them
RESUME_MUST_MATCH = ("net", "model", "noise", "data", "seed")
#: optimiser keys (``model.optimizer.fused``...) that say how fast a step runs, not what it does
OPTIMIZER_SPEED_KEYS = frozenset({"fused", "foreach"})
#: data keys that say where or how fast data is read, not what is trained on
DATA_LOCATION_KEYS = frozenset(
    {"data_dir", "download", "on_device", "eval_batch_size", "num_workers", "cache_dir"}
)
#: keys every Lightning checkpoint has, which ``trainer.fit(ckpt_path=...)`` reads
LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")
#: checkpoint keys written by AutoencoderModule.on_save_checkpoint
CONFIG_KEY = "aelightning_config"
INPUT_SHAPE_KEY = "aelightning_input_shape"


# ---------------------------------------------------------------------------------- saving
def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """``torch.save`` through :func:`~aelightning.checkpointing.atomic.atomic_file`: a temp
    file beside ``path``, fsynced, renamed over it; ``path`` is untouched on any error."""
    with atomic_file(path, "wb") as handle:
        torch.save(obj, handle)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO with atomic local saves and weights-only loads.

    Remote paths (``s3://`` etc.) keep Lightning's writer, whose object stores publish a file
    only when the upload completes.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not is_local_path(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Any = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Always weights-only: a resume must not execute code from a file."""
        if weights_only is False:
            log.warning("ignoring weights_only=False: checkpoints are always loaded weights-only")
        if not is_local_path(path):
            with _safe_load_errors(path):
                return super().load_checkpoint(path, map_location, weights_only=True)
        return load_checkpoint(path, map_location=map_location)


# --------------------------------------------------------------------------------- loading
@contextlib.contextmanager
def _safe_load_errors(path: _PATH) -> Iterator[None]:
    """Turn torch.load's failures into one sentence that says what is wrong with the file."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            yield
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found is None:  # not a pickled global: bytes that are no pickle stream at all
            raise CheckpointError(
                f"checkpoint '{path}' is not a readable torch checkpoint (not in torch's file "
                "format: its bytes are no saved object)."
            ) from None
        what = f" ({found.group(1)})"
        raise CheckpointError(
            f"refusing to load checkpoint '{path}': it holds a pickled Python object{what} that "
            "loading would construct or call, so it may run code; only weights-only checkpoints "
            "(tensors, numbers, strings, lists, dicts) are accepted."
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CheckpointError(f"checkpoint '{path}' does not exist.") from None
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        reason = first_line.split(". ")[0].rstrip(".")[:160]
        if isinstance(exc, KeyError):  # torch's legacy reader on a file that is no checkpoint
            reason = "not in torch's file format"
        elif "inline_container" in reason or "zip archive" in reason:
            reason = "a zip archive without torch's saved data"
        raise CheckpointError(
            f"checkpoint '{path}' is not a readable torch checkpoint (truncated or corrupt: "
            f"{reason})."
        ) from None


def load_checkpoint(path: _PATH, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors; never runs pickled code."""
    if is_local_path(path) and not Path(path).is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist or is not a file.")
    with _safe_load_errors(path):
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint '{path}' holds a {type(checkpoint).__name__}, not a Lightning checkpoint."
        )
    return checkpoint


def load_model_from_checkpoint(
    path: _PATH, map_location: Any = "cpu", input_shape: Sequence[int] | None = None
) -> Any:
    """Rebuild the trained model from a checkpoint alone (its stored config and weights).

    Returns the :class:`~aelightning.models.base.AutoencoderModule` in eval mode, with
    ``run_config`` set to the stored config. ``input_shape`` is only needed for checkpoints that
    predate the stored shape.
    """
    checkpoint = load_checkpoint(path, map_location=map_location)
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"checkpoint '{path}' has no '{CONFIG_KEY}': it was not written by ae-train, so the "
            "model cannot be rebuilt from it."
        )
    shape = input_shape or checkpoint.get(INPUT_SHAPE_KEY)
    if not shape:
        raise CheckpointError(
            f"checkpoint '{path}' does not record its input shape; pass input_shape=(C, H, W)."
        )
    return rebuild_model(checkpoint, OmegaConf.create(config), shape, path)


#: modules that moved since a checkpoint's config was written (old prefix -> new prefix)
MOVED_TARGETS = {
    # the constant schedule became no schedule at all (same learning rate, nothing to step)
    "aelightning.schedulers.constant": "aelightning.models.schedulers.no_schedule",
    "aelightning.models.schedulers.constant": "aelightning.models.schedulers.no_schedule",
    "aelightning.noise.": "aelightning.models.noise.",
    "aelightning.schedulers.": "aelightning.models.schedulers.",
}


def current_targets(config: Any) -> Any:
    """``config`` with every ``_target_`` of a moved module renamed, so that checkpoints written
    before the package was reorganised still rebuild."""
    if isinstance(config, Mapping):
        return {key: current_targets(value) for key, value in config.items()} | (
            {"_target_": _renamed(config["_target_"])} if "_target_" in config else {}
        )
    if isinstance(config, list):
        return [current_targets(value) for value in config]
    return config


def _renamed(target: Any) -> Any:
    for old, new in MOVED_TARGETS.items():
        if isinstance(target, str) and target.startswith(old):
            return new + target[len(old) :]
    return target


def rebuild_model(
    checkpoint: dict[str, Any], config: DictConfig, input_shape: Sequence[int], path: _PATH
) -> Any:
    """Build the model ``config`` describes and load the checkpoint's weights into it."""
    from aelightning.builders import build_model  # builders imports the models: keep lazy

    config = OmegaConf.create(current_targets(OmegaConf.to_container(config)))
    model = build_model(config, tuple(int(s) for s in input_shape))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"checkpoint '{path}' weights do not fit the model its config builds ({first})."
        ) from None
    model.run_config = OmegaConf.to_container(config, resolve=True)  # type: ignore[assignment]
    return model.eval()


# -------------------------------------------------------------------------------- resuming
def find_last_checkpoint(folder: _PATH) -> Path | None:
    """The newest ``last*.ckpt`` in ``folder`` (the latest state of a run), if any."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("last*.ckpt") if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns, default=None)


def checkpoint_dir(cfg: DictConfig) -> Path:
    """Where this run's checkpoints go (the ``model_checkpoint`` callback's folder)."""
    callbacks = cfg.get("callbacks") or {}
    for name in ("resume_checkpoint", "model_checkpoint"):
        entry = callbacks.get(name)
        if entry is not None and entry.get("dirpath"):
            return Path(entry.dirpath)
    return Path(cfg.paths.output_dir) / "checkpoints"


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """The checkpoint ``trainer.fit`` continues from: ``ckpt_path``, or with ``resume=true`` the
    latest state in this run dir; checked to exist and to match the config."""
    ckpt_path, resume = cfg.get("ckpt_path"), cfg.get("resume", False)
    if resume not in (True, False, "auto"):
        raise CheckpointError(f"resume={resume!r} must be true, false or auto.")
    if resume and ckpt_path:
        raise CheckpointError(
            f"set either resume={str(resume).lower()} (continue the run in hydra.run.dir) or "
            "ckpt_path=<file>, not both."
        )
    if resume:
        folder = checkpoint_dir(cfg)
        found = find_last_checkpoint(folder)
        if found is None and resume == "auto":  # a first start (e.g. before a SLURM requeue)
            log.info("resume=auto: no last.ckpt in %s yet; starting from scratch", folder)
            return None
        if found is None:
            raise CheckpointError(
                f"resume=true found no last.ckpt in '{folder}'; point hydra.run.dir at the run "
                "to continue, e.g. ae-train resume=true hydra.run.dir=outputs/<date>/<time>."
            )
        ckpt_path = str(found)
        log.info("Resuming from %s", ckpt_path)
    elif not ckpt_path:
        return None
    elif not Path(ckpt_path).is_file():
        raise CheckpointError(
            f"ckpt_path '{ckpt_path}' does not exist; pass the path of a .ckpt file."
        )
    checkpoint = load_checkpoint(ckpt_path)
    missing = [key for key in LIGHTNING_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"ckpt_path '{ckpt_path}' is a torch file but not a Lightning checkpoint (no "
            f"{' or '.join(repr(k) for k in missing)}); pass a .ckpt written by ae-train."
        )
    saved = checkpoint.get(CONFIG_KEY)
    if isinstance(saved, dict):
        check_same_run(saved, OmegaConf.to_container(cfg, resolve=True), ckpt_path)
    return str(ckpt_path)


def check_same_run(saved: Mapping[str, Any], current: Mapping[str, Any], path: _PATH) -> None:
    """Refuse to continue a checkpoint under a config that would train something else."""
    for group in RESUME_MUST_MATCH:
        before, now = saved.get(group), current.get(group)
        if group == "data" and isinstance(before, Mapping) and isinstance(now, Mapping):
            before = {k: v for k, v in before.items() if k not in DATA_LOCATION_KEYS}
            now = {k: v for k, v in now.items() if k not in DATA_LOCATION_KEYS}
        if group == "model":
            before, now = _without_optimizer_speed_keys(before), _without_optimizer_speed_keys(now)
        key = _first_difference(before, now, group)
        if key is not None:
            was, is_ = _lookup(saved, key), _lookup(current, key)
            raise CheckpointError(
                f"checkpoint '{path}' was trained with {key}={was!r} but this run has "
                f"{key}={is_!r}; repeat the original run's overrides to continue it."
            )


def _without_optimizer_speed_keys(model: Any) -> Any:
    if not isinstance(model, Mapping):
        return model
    return {
        k: {o: x for o, x in v.items() if o not in OPTIMIZER_SPEED_KEYS}
        if isinstance(v, Mapping) and str(k).endswith("optimizer")
        else v
        for k, v in model.items()
    }


def _first_difference(a: Any, b: Any, key: str) -> str | None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(k), b.get(k), f"{key}.{k}")
            if found is not None:
                return found
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    return None if a == b else key


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node

"""Finished ``ae-train`` runs read back from their folders, and what tells them apart.

A run dir holds ``.hydra/`` (config, overrides, the group choices), ``metrics.json`` (its final
numbers), ``metrics.csv`` (its curves), ``figures/`` and, inside a sweep, ``job.json`` (status
and error line). Runs are compared on the keys their overrides set whose values differ
(:func:`varying_keys`), named as typed on the command line: ``net`` (the group option chosen),
``noise.std`` (a value).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

#: final metrics shown beside a run (ae-evaluate adds probe/*, anomaly/*, test/iw_nll)
METRIC_PREFIXES = ("val/", "test/", "probe/", "anomaly/")

HParamValue = bool | int | float | str
#: overrides that say how a run was run, not what it is (not compared on)
BOOKKEEPING = (
    *("callbacks", "paths", "runtime", "logger", "hydra", "debug", "data.data_dir"),
    *("trainer.limit_", "trainer.accelerator", "trainer.devices", "trainer.log_every_n_steps"),
    *("trainer.enable_", "ckpt_path", "resume", "test", "compile", "optimized_metric"),
)


def is_bookkeeping(key: str) -> bool:
    return key.replace("/", ".").startswith(BOOKKEEPING)


def override_keys(overrides: Iterable[str], sweeps_only: bool = False) -> list[str]:
    """The keys (``noise.std``) or groups (``net``, ``model/optimizer``) that overrides set.

    ``sweeps_only`` keeps those with several values (``net=mlp,conv``, ``range(...)``).
    Deletions (``~key``) are left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete() or (sweeps_only and not override.is_sweep_override()):
            continue
        if override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys


def sweep_keys(sweep_dir: Path, sweeper_params: Mapping[str, Any] | None = None) -> list[str]:
    """Keys a multirun varies: its sweep overrides (saved by Hydra's basic sweeper in
    ``multirun.yaml``) and the sweeper's search space (``hydra.sweeper.params``, e.g. Optuna's)."""
    keys = [str(k) for k in (sweeper_params or {})]
    saved = Path(sweep_dir) / "multirun.yaml"
    if saved.is_file():
        task = OmegaConf.select(OmegaConf.load(saved), "hydra.overrides.task", default=[])
        keys = [*override_keys(task, sweeps_only=True), *keys]
    return list(dict.fromkeys(keys))


def hparam_value(config: Any, choices: Mapping[str, Any], key: str) -> HParamValue | None:
    """The value of ``key``: the option chosen for a group, else the config value.

    Without a record of the choices (a checkpoint's config), a group shows its ``_target_``'s
    class name. None when the run has no such key.
    """
    if choices.get(key) is not None:
        option = choices[key]
        return ",".join(map(str, option)) if isinstance(option, list) else str(option)
    value: Any = config
    try:
        for part in key.replace("/", ".").split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
    except Exception:  # an interpolation that resolves only inside the running app
        return None
    if isinstance(value, Mapping):
        target = value.get("_target_")
        return str(target).rsplit(".", 1)[-1] if target else None
    if value is None:
        return "null"
    return value if isinstance(value, (bool, int, float, str)) else str(value)


@dataclass
class RunRecord:
    """What the report needs of one run."""

    dir: Path
    overrides: list[str]
    status: str  # ok | failed | incomplete
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    config: Any = None
    choices: dict[str, Any] = field(default_factory=dict)
    #: a short unique name (relative to the runs' common folder)
    name: str = ""

    def value(self, key: str) -> HParamValue | None:
        return hparam_value(self.config or {}, self.choices, key)

    @property
    def final_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if k.startswith(METRIC_PREFIXES)}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _last_error_line(run_dir: Path) -> str | None:
    for log in sorted(run_dir.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        if lines:
            return re.sub(r"^\[.*?\]\[.*?\]\[ERROR\] - ", "", lines[-1]).strip()
    return None


def load_run(run_dir: Path | str) -> RunRecord:
    """Read one run dir (status from ``job.json`` in a sweep, else from ``metrics.json``)."""
    run_dir = Path(run_dir)
    hydra_dir = run_dir / ".hydra"
    saved_overrides = hydra_dir / "overrides.yaml"
    overrides = OmegaConf.load(saved_overrides) if saved_overrides.is_file() else []
    config = OmegaConf.load(hydra_dir / "config.yaml")
    choices: dict[str, Any] = {}
    if (hydra_dir / "hydra.yaml").is_file():
        saved = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices")
        choices = OmegaConf.to_container(saved) if saved is not None else {}  # type: ignore[assignment]
    result = _read_json(run_dir / "metrics.json") or {}
    job = _read_json(run_dir / "job.json")
    if job is not None:
        status, error = job["status"], job.get("error")
    elif result:
        status, error = "ok", None
    else:
        status, error = "incomplete", _last_error_line(run_dir) or "no metrics.json yet"
    metrics = {
        k: float(v)
        for k, v in (result.get("metrics") or (job or {}).get("metrics") or {}).items()
        if isinstance(v, (int, float)) and math.isfinite(float(v))
    }
    return RunRecord(
        dir=run_dir,
        overrides=[str(o) for o in overrides],
        status=status,
        error=error,
        metrics=metrics,
        config=config,
        choices=choices,
    )


def _is_training_run(run_dir: Path) -> bool:
    """An ``ae-train`` run dir (``ae-evaluate``'s have no model group in their config)."""
    config = run_dir / ".hydra" / "config.yaml"
    return config.is_file() and "model" in OmegaConf.load(config)


def _natural(path: Path) -> list[Any]:
    """Sort key putting ``sweep/2`` before ``sweep/10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_run_dirs(paths: Iterable[Path | str]) -> list[Path]:
    """The training run dirs at or under each path (a run, a sweep, a folder of either)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if _is_training_run(path):
            candidates = [path]
        else:
            candidates = sorted(
                (p.parent.parent for p in path.rglob(".hydra/config.yaml")), key=_natural
            )
        found += [p for p in candidates if _is_training_run(p) and p not in found]
    return found


def load_runs(paths: Iterable[Path | str]) -> list[RunRecord]:
    """:func:`load_run` for every run under ``paths``, each named by its path relative to the
    folder they share (``0``, ``1``... for one sweep)."""
    dirs = find_run_dirs(paths)
    runs = [load_run(d) for d in dirs]
    if runs:
        common = Path(os.path.commonpath([str(d.resolve()) for d in dirs]))
        for run in runs:
            relative = os.path.relpath(run.dir.resolve(), common)
            run.name = run.dir.name if relative == "." else relative
    return runs


def varying_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Keys set by some run's overrides whose values differ between the runs, in the order
    they first appear (the sweep's axes)."""
    keys = override_keys(o for run in runs for o in run.overrides)
    return [k for k in keys if not is_bookkeeping(k) and len({repr(r.value(k)) for r in runs}) > 1]


def common_overrides(runs: Sequence[RunRecord], varying: Sequence[str]) -> list[str]:
    """Overrides every run shares (shown once above the comparisons)."""
    if not runs:
        return []
    shared = [o for o in runs[0].overrides if all(o in r.overrides for r in runs[1:])]
    return [o for o in shared if not set(override_keys([o])) & set(varying)]


def label(run: RunRecord, varying: Sequence[str]) -> str:
    """``net=conv noise.std=0.1``: the run's values of the varying keys (else its name)."""
    parts = [f"{k}={_short(run.value(k))}" for k in varying]
    return " ".join(parts) or run.name


def _short(value: HParamValue | None) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "(unset)" if value is None else str(value)


def is_number(value: HParamValue | None) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)

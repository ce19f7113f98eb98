"""The loggers of ``conf/logger/``: metrics.csv in the run dir, and MLflow / W&B as extras.

``metrics.csv`` is the record every run keeps (``logger=csv`` is part of every logger config):
the loss curves of a run's figures and of ``report.html`` are read from it
(:mod:`aelightning.evaluation.history`). MLflow and W&B are optional packages; selecting one
without it installed fails with one sentence saying what to install.
"""

from __future__ import annotations

import csv
import importlib
import math
import re
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from aelightning.errors import ConfigError

METRICS_FILE = "metrics.csv"
SQLITE = "sqlite:///"
#: characters MLflow refuses in a parameter name
MLFLOW_REFUSED = re.compile(r"[^\w\-. :/]")


#: seconds between two writes of a logger's files during a fit (see :class:`ThrottledSave`)
FLUSH_EVERY_S = 2.0


class ThrottledSave:
    """A logger whose ``save`` writes its files at most every ``flush_every_s`` seconds.

    Lightning saves every logger after each step it logs: TensorBoard flushes its event file
    (waiting for its writer thread) and looks for its hparams file, the CSV logger opens
    ``metrics.csv`` and appends. In a fit of the seeds' MLP at batch 32 that was ~0.7 ms per
    logged step, ~3 % of the training time (measured). Writing less often loses nothing: the
    values wait in memory (TensorBoard's queue, the CSV rows) until the next write, and the
    files are written at once when the logger is finalized (the end of a fit or test, also a
    failed one), after every checkpoint save (so a killed run's files hold every row up to its
    last checkpoint) and when a reader asks (:func:`flush_loggers`). ``flush_every_s=0``
    writes after every logged step, as Lightning does.
    """

    def __init__(self, *args: Any, flush_every_s: float = FLUSH_EVERY_S, **kwargs: Any):
        if isinstance(flush_every_s, bool) or not (
            isinstance(flush_every_s, int | float) and flush_every_s >= 0
        ):
            raise ConfigError(
                f"a logger's flush_every_s must be a number of seconds >= 0, got {flush_every_s!r}"
            )
        super().__init__(*args, **kwargs)
        self.flush_every_s = float(flush_every_s)
        self._saved_at = -math.inf

    def save(self) -> None:
        if time.monotonic() - self._saved_at >= self.flush_every_s:
            self.save_now()

    def save_now(self) -> None:
        """Write the logger's files now."""
        self._saved_at = time.monotonic()
        super().save()  # type: ignore[misc]

    def finalize(self, status: str) -> None:
        self._saved_at = -math.inf  # the save finalize makes writes
        super().finalize(status)  # type: ignore[misc]

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        super().after_save_checkpoint(checkpoint_callback)  # type: ignore[misc]
        self.save_now()


def flush_loggers(trainer: L.Trainer) -> None:
    """Write every logger's files now (a throttled one's too): before reading ``metrics.csv``
    back, and with every checkpoint."""
    for logger in trainer.loggers:
        if isinstance(logger, ThrottledSave):
            logger.save_now()
        else:
            logger.save()


class RunTensorBoardLogger(ThrottledSave, TensorBoardLogger):
    """Lightning's TensorBoardLogger, writing its event file at most every ``flush_every_s``
    seconds during a fit (:class:`ThrottledSave`)."""


class RunCSVLogger(ThrottledSave, CSVLogger):
    """Lightning's CSVLogger writing ``<save_dir>/metrics.csv`` (no name/version subfolders), at
    most every ``flush_every_s`` seconds during a fit (:class:`ThrottledSave`).

    A resumed run (``resume=true``) logs into the same run dir: the rows of its earlier
    sessions are kept (Lightning's writer would delete the file), so the curves span the
    whole run; a re-logged epoch appears twice and readers keep its last row.
    """

    def __init__(self, save_dir: str, **kwargs: Any):
        super().__init__(save_dir, name="", version="", **kwargs)

    @property
    def experiment(self) -> Any:
        if self._experiment is not None or rank_zero_only.rank != 0:
            return super().experiment
        path = Path(self.log_dir) / METRICS_FILE
        previous = _read_rows(path)
        with warnings.catch_warnings():  # the run dir always holds .hydra/: not a problem
            warnings.filterwarnings("ignore", message="Experiment logs directory")
            writer = super().experiment
        if previous:
            writer.metrics[:0] = previous
            writer.save()
        return writer


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [
            {k: v for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def require_extra(package: str, selection: str) -> None:
    """Fail with one sentence when an optional logger's package is not installed."""
    try:
        importlib.import_module(package)
    except ImportError:
        raise ConfigError(
            f"{selection} needs the {package} package: pip install -e '.[{package}]' "
            f"(or pip install {package})."
        ) from None


def job_label() -> str | None:
    """A run name: the job's swept values in a sweep (``net=conv noise.std=0.1``), else its
    command-line overrides, else its run dir's name (None outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from aelightning.evaluation.runs import override_keys, sweep_keys

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        swept = set(sweep_keys(Path(hydra_cfg.sweep.dir), hydra_cfg.sweeper.get("params")))
        overrides = [o for o in overrides if swept & set(override_keys([o]))] or overrides
    return " ".join(overrides) or Path(hydra_cfg.runtime.output_dir).name


def mlflow_logger(run_name: str | None = None, **kwargs: Any) -> Logger:
    """Lightning's ``MLFlowLogger``, named after the job's overrides unless ``run_name``."""
    require_extra("mlflow", "logger=mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    uri = str(kwargs.get("tracking_uri") or "")
    if uri.startswith(SQLITE):  # SQLite creates the file, not its folder
        Path(uri.removeprefix(SQLITE)).parent.mkdir(parents=True, exist_ok=True)
    logger = MLFlowLogger(run_name=run_name or job_label(), **kwargs)
    log_params = logger.log_hyperparams
    logger.log_hyperparams = lambda params, *args, **kw: log_params(  # type: ignore[method-assign]
        mlflow_params(params), *args, **kw
    )
    return logger


def mlflow_params(params: Any) -> Any:
    """``params`` as MLflow takes them: without Hydra's own node (it is in ``.hydra/``) and with
    every character MLflow refuses in a name (e.g. the ``@`` of ``gallery@callbacks.figures``)
    replaced by ``_``."""
    if not isinstance(params, Mapping):
        return params
    return {
        MLFLOW_REFUSED.sub("_", str(key)): mlflow_params(value)
        for key, value in params.items()
        if key != "hydra"
    }


def wandb_logger(name: str | None = None, **kwargs: Any) -> Logger:
    """Lightning's ``WandbLogger``, named after the job's overrides unless ``name``."""
    require_extra("wandb", "logger=wandb")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(name=name or job_label(), **kwargs)

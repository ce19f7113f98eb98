"""The loggers of ``conf/logger/``: metrics.csv in the run dir, and MLflow / W&B as extras.

``metrics.csv`` is the record every run keeps (``logger=csv`` is part of every logger config):
the loss curves of a run's figures and of ``report.html`` are read from it
(:mod:`aelightning.evaluation.history`). MLflow and W&B are optional packages; selecting one
without it installed fails with one sentence saying what to install.
"""

from __future__ import annotations

import csv
import importlib
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.utilities import rank_zero_only

from aelightning.errors import ConfigError

METRICS_FILE = "metrics.csv"
SQLITE = "sqlite:///"
#: characters MLflow refuses in a parameter name
MLFLOW_REFUSED = re.compile(r"[^\w\-. :/]")


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger writing ``<save_dir>/metrics.csv`` (no name/version subfolders).

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

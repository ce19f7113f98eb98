"""The resolved config in TensorBoard's HPARAMS tab, linked to the run's final metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from aelightning.evaluation.metrics import HEADLINE_METRICS
from aelightning.runtime.lightning_compat import tensorboard_file_writer


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"net": {"latent_dim": 20}}`` -> ``{"net/latent_dim": 20}``; lists become strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def log_hparams(
    trainer: L.Trainer,
    config: Mapping[str, Any],
    final_metrics: Mapping[str, float],
    metric_names: Iterable[str] = HEADLINE_METRICS,
) -> None:
    """Write the hparams summary for every TensorBoard logger.

    Lightning's ``log_hyperparams`` only writes the HPARAMS tab together with a dummy
    metric; here the tab points at the run's real scalar tags instead, so the table
    shows their final values and runs of a sweep can be compared side by side.
    """
    if not trainer.is_global_zero:  # other DDP ranks hold a dummy experiment, no writer
        return
    params = flatten_config({k: v for k, v in config.items() if k != "hydra"})
    metrics = {name: float(final_metrics[name]) for name in metric_names if name in final_metrics}
    if not metrics:
        return
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # the trainer closed the writer at teardown; this reopens it (same log dir)
            writer = tensorboard_file_writer(logger.experiment)
            for summary in hparams(params, metrics):
                writer.add_summary(summary)
            logger.experiment.close()

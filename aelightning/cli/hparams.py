"""TensorBoard's HPARAMS tab: the keys that tell runs apart, linked to the run's final metrics.

Not the whole config (that stays in ``hparams.yaml`` and ``.hydra/``): first the keys the sweep
varies, then the axes people compare autoencoders on (:data:`AXES`), then the run's other
command-line overrides, at most :data:`HPARAM_LIMIT` keys, named as they are typed on the
command line (``net`` is the group chosen, ``noise.std`` a value). Only the session summaries
are written, no experiment summary: TensorBoard then builds the table from all runs it is shown
and puts the hparams whose values differ (the swept keys) in the first columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf
from torch.utils.tensorboard.summary import hparams

from aelightning.evaluation.runs import (
    METRIC_PREFIXES,
    HParamValue,
    hparam_value,
    is_bookkeeping,
    override_keys,
    sweep_keys,
)
from aelightning.runtime.lightning_compat import tensorboard_file_writer

HPARAM_LIMIT = 25
#: what autoencoder runs are compared on, as typed on the command line; absent keys are skipped
AXES = (
    "data",
    "net",
    "model",
    "net.latent_dim",
    "net.hidden_dims",
    "net.channels",
    "net.hidden_activation",
    "net.bottleneck_activation",
    "net.output_activation",
    "noise",
    "noise.std",
    "noise.p",
    "model.recon_loss",
    "<loss weights>",  # model.beta, model.lambda_*, model.*_weight, model.p_* (dropout)
    "model/optimizer",
    "model.optimizer.lr",
    "model.optimizer.weight_decay",
    "model/scheduler",
    "data.batch_size",
    "trainer.max_epochs",
    "seed",
)
LOSS_WEIGHT = re.compile(r"beta|lambda_\w+|\w+_weight|p_input|p_hidden")


def axes(config: Mapping[str, Any]) -> list[str]:
    """:data:`AXES` with the objective's loss weights (``model.beta``, ...) in their place."""
    model = config.get("model")
    weights = [
        f"model.{k}"
        for k, v in (model.items() if isinstance(model, Mapping) else ())
        if LOSS_WEIGHT.fullmatch(str(k)) and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return [k for axis in AXES for k in (weights if axis == "<loss weights>" else [axis])]


def curated_hparams(
    config: Mapping[str, Any],
    choices: Mapping[str, Any] | None = None,
    swept: Sequence[str] = (),
    overridden: Sequence[str] = (),
    limit: int = HPARAM_LIMIT,
) -> dict[str, HParamValue]:
    """The ``swept`` keys, then :func:`axes`, then the other ``overridden`` keys that are not
    bookkeeping (``runs.BOOKKEEPING``), up to ``limit`` keys."""
    extra = [k for k in overridden if not is_bookkeeping(k)]
    params: dict[str, HParamValue] = {}
    for key in [*swept, *axes(config), *extra]:
        if len(params) >= limit:
            break
        value = hparam_value(config, choices or {}, key)
        if key not in params and value is not None:
            params[key] = value
    return params


def job_context() -> tuple[dict[str, Any], list[str], list[str]]:
    """This Hydra job's group choices, the keys its sweep varies and its command-line override
    keys (all empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}, [], []
    hydra_cfg = HydraConfig.get()
    choices = OmegaConf.to_container(hydra_cfg.runtime.choices) or {}
    swept: list[str] = []
    if hydra_cfg.mode == RunMode.MULTIRUN:
        swept = sweep_keys(Path(hydra_cfg.sweep.dir), hydra_cfg.sweeper.get("params"))
    return dict(choices), swept, override_keys(hydra_cfg.overrides.task)  # type: ignore[arg-type]


def log_hparams(
    trainer: L.Trainer,
    config: Mapping[str, Any],
    final_metrics: Mapping[str, float],
) -> None:
    """Write the curated hparams and the final metrics for every TensorBoard logger."""
    if not trainer.is_global_zero:  # other DDP ranks hold a dummy experiment, no writer
        return
    metrics = {k: float(v) for k, v in final_metrics.items() if k.startswith(METRIC_PREFIXES)}
    if not metrics:
        return
    params = curated_hparams(config, *job_context())
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # the trainer closed the writer at teardown; this reopens it (same log dir)
            writer = tensorboard_file_writer(logger.experiment)
            write_session(writer, params, metrics)
            logger.experiment.close()


def write_session(
    writer: Any, params: Mapping[str, HParamValue], metrics: Mapping[str, float]
) -> None:
    """The session summaries (not the experiment: TensorBoard infers it, see the module doc)."""
    _experiment, session_start, session_end = hparams(dict(params), dict(metrics))
    writer.add_summary(session_start)
    writer.add_summary(session_end)

"""``ae-train``: compose the config, build data + model + trainer, fit, test, summarise.

Thin on purpose: everything a run does is decided by ``conf/`` (see ``conf/train.yaml``).
Returns the value of ``optimized_metric`` so Hydra sweepers can minimise it.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from aelightning.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_model,
    build_trainer,
)
from aelightning.callbacks.resume import interrupted_error
from aelightning.checkpointing.atomic import write_json
from aelightning.checkpointing.checkpoint import AtomicCheckpointIO, resolve_ckpt_path
from aelightning.cli.config_tree import FILE_NAME as CONFIG_TREE_FILE
from aelightning.cli.config_tree import print_config_tree
from aelightning.cli.hparams import log_hparams
from aelightning.cli.reporting import run_reporting_errors
from aelightning.cli.summary import print_summary
from aelightning.config import CONFIG_DIR
from aelightning.evaluation.metrics import scalar_metrics
from aelightning.runtime.lightning_compat import lean_hooks
from aelightning.runtime.loop_overhead import profiler_override
from aelightning.runtime.settings import RuntimeSettings, configure_early, configure_runtime

log = logging.getLogger("aelightning")

# Lightning 2.6 on torch 2.14 warns about its own pytree use on every run; not actionable.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns its final metrics and where its files are."""
    started = time.perf_counter()
    if rank_zero_only.rank == 0:  # print_config=false: only the file (scripts running many fits)
        quiet = None if cfg.get("print_config", True) else Console(file=io.StringIO())
        print_config_tree(cfg, Path(cfg.paths.output_dir) / CONFIG_TREE_FILE, quiet)
    # before any tensor work (OpenMP threads inherit it); a bad runtime value fails here
    settings = RuntimeSettings.from_config(cfg.get("runtime"), cfg.get("compile", False))
    configure_early(settings)
    if cfg.get("seed") is not None:
        L.seed_everything(int(cfg.seed), workers=True)
    ckpt_path = resolve_ckpt_path(cfg)  # ckpt_path=..., or resume=true: this run dir's last.ckpt

    datamodule = build_datamodule(cfg)
    model = build_model(cfg, datamodule.dims)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    loggers = build_loggers(cfg.get("logger"))
    callbacks = build_callbacks(cfg.get("callbacks"))
    if not loggers:  # `logger=none`: nothing to send learning rates to (Lightning would refuse)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        **profiler_override(cfg.trainer.get("profiler")),
        plugins=[AtomicCheckpointIO()],  # temp file + fsync + rename; weights-only loads
    )
    configure_runtime(cfg, model, trainer)  # threads, TF32, channels_last, compile
    for logger in trainer.loggers:
        logger.log_hyperparams(model.run_config)  # hparams.yaml beside the events

    try:  # hooks called without profiler contexts when none is configured (lean_hooks)
        with lean_hooks(settings.lean_hooks):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except (SystemExit, KeyboardInterrupt) as exc:  # Ctrl-C / SIGTERM, after last.ckpt was saved
        raise interrupted_error(trainer, exc, str(cfg.paths.output_dir)) from None
    metrics = scalar_metrics(trainer.callback_metrics)
    epochs = trainer.current_epoch  # completed epochs (early stopping may end before max)

    best = _best_checkpoint(trainer)
    if cfg.get("test"):
        # test-time draws (noise, a VAE's sample) start from the seed, as in ae-evaluate,
        # so evaluating the checkpoint later reproduces these numbers
        if cfg.get("seed") is not None:
            L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        try:
            with lean_hooks(settings.lean_hooks):
                trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
        except (SystemExit, KeyboardInterrupt) as exc:
            raise interrupted_error(trainer, exc, str(cfg.paths.output_dir)) from None
        metrics.update(scalar_metrics(trainer.callback_metrics))
    log_hparams(trainer, model.run_config, metrics)
    result = {
        "metrics": metrics,
        "best_checkpoint": best,
        "epochs": epochs,
        "output_dir": str(cfg.paths.output_dir),
        "data": getattr(datamodule, "source_description", type(datamodule).__name__),
        "seconds": time.perf_counter() - started,
        "interrupted": trainer.interrupted,
    }
    if trainer.is_global_zero:
        write_json(Path(cfg.paths.output_dir) / "metrics.json", result)
    return result


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best-by-val/loss checkpoint when one was written (not under fast_dev_run)."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
        return callback.best_model_path
    return None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    result = run_reporting_errors(lambda: train(cfg))
    print_summary(result)
    metric = cfg.get("optimized_metric")
    return result["metrics"].get(metric) if metric else None


if __name__ == "__main__":
    main()

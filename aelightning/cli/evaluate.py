"""``ae-evaluate ckpt_path=...``: score a trained checkpoint on the test split and draw it.

Thin on purpose, like ``ae-train``: compose the config, load the run, call the inspection
the end of training also runs (:func:`aelightning.evaluation.pipeline.inspect_model`), print
and save. The checkpoint is read weights-only and the model and data are rebuilt from the
config the training run stored in it, so nothing has to be repeated on the command line. The
test pass is ``trainer.test`` seeded as ``ae-train`` seeds its own, so ``test/loss``
reproduces the run's; then the numbers papers report (BCE, SSIM, probes, anomaly AUROC, noise
curve, the VAE's likelihood bounds) and the figure gallery. Everything lands in this command's
own run dir: ``metrics.json``, ``figures/`` and ``tensorboard/`` (scalars, images, projector,
hparams).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from aelightning.builders import build_datamodule
from aelightning.checkpointing.atomic import write_json
from aelightning.checkpointing.checkpoint import CONFIG_KEY, load_checkpoint, rebuild_model
from aelightning.cli.hparams import curated_hparams, write_session
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR
from aelightning.errors import CheckpointError, ConfigError
from aelightning.evaluation import ood
from aelightning.evaluation.history import TrainingHistory
from aelightning.evaluation.pipeline import InspectionOptions, inspect_model
from aelightning.evaluation.plots import FigureSink
from aelightning.models.base import AutoencoderModule
from aelightning.runtime.lightning_compat import tensorboard_file_writer

warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


# --------------------------------------------------------------------------- loading
def saved_config(checkpoint: dict[str, Any], path: str) -> DictConfig:
    """The training run's resolved config, as ``ae-train`` stored it in the checkpoint."""
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise CheckpointError(
            f"checkpoint '{path}' has no saved run config ('{CONFIG_KEY}'): it was not written "
            "by ae-train, so ae-evaluate cannot rebuild its model and data."
        )
    return OmegaConf.create(config)


def apply_data_overrides(run_cfg: DictConfig, overrides: DictConfig | None) -> None:
    """Set the non-null ``data.*`` values of the evaluate config on the run's data config."""
    with open_dict(run_cfg):
        for key, value in (overrides or {}).items():
            if value is not None:
                run_cfg.data[key] = value


def load_data(cfg: DictConfig, run_cfg: DictConfig) -> Any:
    """The data module to evaluate on: the training run's data (``run_cfg.data``) read as the
    evaluate config's non-null ``data.*`` values say."""
    apply_data_overrides(run_cfg, cfg.get("data"))
    return build_datamodule(run_cfg)


def training_run_dir(ckpt_path: Path, run_cfg: DictConfig) -> Path:
    """The run dir a checkpoint belongs to: ``<run>/checkpoints/x.ckpt``, else the saved one."""
    if ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    saved = OmegaConf.select(run_cfg, "paths.output_dir", default=None)
    return Path(saved) if saved else ckpt_path.parent


def load_run(cfg: DictConfig) -> tuple[Path, DictConfig, Any, AutoencoderModule]:
    """Checkpoint -> ``(path, the run's config, its data module, the trained model)``."""
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "ckpt_path is required: ae-evaluate ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    checkpoint = load_checkpoint(ckpt_path)
    run_cfg = saved_config(checkpoint, str(ckpt_path))
    datamodule = load_data(cfg, run_cfg)
    model = rebuild_model(checkpoint, run_cfg, datamodule.dims, str(ckpt_path))
    return ckpt_path, run_cfg, datamodule, model


# -------------------------------------------------------------------------- outputs
def log_to_tensorboard(writer: Any, metrics: dict[str, float], run_cfg: DictConfig) -> None:
    """Scalars at step 0, and the hparams tab linking the run's config to these numbers."""
    for name, value in metrics.items():
        writer.add_scalar(name, value, 0)
    params = curated_hparams(OmegaConf.to_container(run_cfg, resolve=True))  # type: ignore[arg-type]
    write_session(tensorboard_file_writer(writer), params, metrics)
    writer.flush()


#: rows of the printed table: the run's own test numbers first, the total loss on top
METRIC_GROUPS = ("test/", "probe/", "anomaly/")


def _metric_order(name: str) -> tuple[int, int, str]:
    group = next((i for i, g in enumerate(METRIC_GROUPS) if name.startswith(g)), len(METRIC_GROUPS))
    return group, 0 if name.endswith("/loss") else 1, name


def print_report(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]ae-evaluate[/bold] {result['checkpoint']} ({result['model']})")
    table = Table()
    table.add_column("metric", style="bold cyan")
    table.add_column("value", justify="right")
    for name in sorted(result["metrics"], key=_metric_order):
        table.add_row(name, f"{result['metrics'][name]:.6g}")
    console.print(table)
    rows = result.get("noise_curve") or []
    if rows:
        noise = Table(title=f"noise curve ({result.get('noise', '')})", title_justify="left")
        for column in ("level", "psnr_noisy", "psnr_out", "gain"):
            noise.add_column(column, justify="right")
        for r in rows:
            noise.add_row(*(f"{r[c]:.4g}" for c in ("level", "psnr_noisy", "psnr_out", "gain")))
        console.print(noise)
    for note in result.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"data: {result['data']}")
    console.print(f"results: {result['output_dir']}/metrics.json, figures/, tensorboard/")


# ------------------------------------------------------------------------ the command
def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; returns what ``metrics.json`` holds."""
    if ood.other_data_selected(cfg):  # data=<group>: score on another dataset
        return ood.evaluate_other_data(cfg)
    started = time.perf_counter()
    options = InspectionOptions.from_evaluate_config(cfg)  # a bad value fails before loading
    ckpt_path, run_cfg, datamodule, model = load_run(cfg)
    batch_size = int(getattr(datamodule, "eval_batch_size", 1000))
    options = options.for_run(run_cfg, cfg.get("seed"), batch_size)

    out_dir = Path(cfg.paths.output_dir)
    run_dir = training_run_dir(ckpt_path.resolve(), run_cfg)
    history = None
    if options.figures is not None:  # the loss curves are a figure
        history = TrainingHistory.from_run_dir(run_dir)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tensorboard"))
    try:
        found = inspect_model(
            model, datamodule, options, FigureSink(out_dir / "figures", writer), history
        )
        log_to_tensorboard(writer, found.metrics, run_cfg)
    finally:
        writer.close()

    result = {
        "checkpoint": str(ckpt_path),
        "training_run": str(run_dir),
        "data": getattr(datamodule, "source_description", type(datamodule).__name__),
        "model": type(model).__name__,
        "noise": repr(model.noise),
        "seed": options.seed,
        "metrics": found.metrics,
        "notes": found.notes,
        "noise_curve": found.noise_curve,
        "figures": {name: str(path) for name, path in found.figures.items()},
        "output_dir": str(out_dir),
        "seconds": time.perf_counter() - started,
    }
    write_json(out_dir / "metrics.json", result)
    return result


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    result = run_reporting_errors(lambda: evaluate(cfg))
    print_report(result)


if __name__ == "__main__":
    main()

"""``ae-evaluate ckpt_path=...``: score a trained checkpoint on the test split and draw it.

The checkpoint is read weights-only and the model and data are rebuilt from the config the
training run stored in it, so nothing has to be repeated on the command line. The test pass is
``trainer.test`` seeded as ``ae-train`` seeds its own, so ``test/loss`` reproduces the run's;
then the numbers papers report (BCE, SSIM, probes, anomaly AUROC, noise curve, the VAE's
likelihood bounds) and the figure gallery. Everything lands in this command's own run dir:
``metrics.json``, ``figures/`` and ``tensorboard/`` (scalars, images, projector, hparams).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table

from aelightning.builders import build_datamodule
from aelightning.checkpointing.atomic import write_json
from aelightning.checkpointing.checkpoint import CONFIG_KEY, load_checkpoint, rebuild_model
from aelightning.cli.hparams import flatten_config
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR
from aelightning.errors import CheckpointError, ConfigError
from aelightning.evaluation import analysis, probes
from aelightning.evaluation.gallery import GalleryOptions, class_names_of, render_gallery
from aelightning.evaluation.history import TrainingHistory, find_event_dir
from aelightning.evaluation.likelihood import (
    MAX_DECODES_PER_CHUNK,
    likelihood_metrics,
    supports_likelihood,
)
from aelightning.evaluation.plots import FigureSink
from aelightning.evaluation.projector import write_projector
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")

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


def training_run_dir(ckpt_path: Path, run_cfg: DictConfig) -> Path:
    """The run dir a checkpoint belongs to: ``<run>/checkpoints/x.ckpt``, else the saved one."""
    if ckpt_path.parent.name == "checkpoints":
        return ckpt_path.parent.parent
    saved = OmegaConf.select(run_cfg, "paths.output_dir", default=None)
    return Path(saved) if saved else ckpt_path.parent


def check_count(value: Any, key: str, low: int = 1) -> None:
    """A number of images: null (all of them) or an integer >= ``low``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ConfigError(f"{key} must be null (all) or an integer >= {low}, got {value!r}.")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if getattr(v, "numel", lambda: 1)() == 1}


# ----------------------------------------------------------------------- the numbers
def run_test_split(
    model: AutoencoderModule, datamodule: Any, run_cfg: DictConfig, cfg: DictConfig, seed: int
) -> dict[str, float]:
    """``trainer.test`` as the training run ran it (same precision, seeded the same way)."""
    trainer = L.Trainer(
        accelerator=cfg.get("accelerator") or "auto",
        devices=1,
        precision=cfg.get("precision")
        or OmegaConf.select(run_cfg, "trainer.precision")
        or "32-true",
        deterministic=OmegaConf.select(run_cfg, "trainer.deterministic", default=False),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    L.seed_everything(seed, workers=True, verbose=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    model.to(trainer.strategy.root_device)  # teardown moved it back to the CPU
    return _scalars(trainer.callback_metrics)


def image_metrics(
    model: AutoencoderModule, images: torch.Tensor, batch_size: int, seed: int, with_ssim: bool
) -> dict[str, float]:
    """BCE and SSIM (plus MSE/PSNR again) of the test pass, drawn as ``trainer.test`` draws."""
    with analysis.seeded(seed, model.device):
        scores = analysis.reconstruction_scores(model, images, batch_size, with_ssim)
    return {
        f"test/{k}": float(v.double().mean()) for k, v in scores.items() if k in ("bce", "ssim")
    }


def probe_metrics(
    model: AutoencoderModule, datamodule: Any, cfg: DictConfig, seed: int, batch_size: int
) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of the codes (train codes fit, test codes score)."""
    train_images, train_labels = analysis.split_tensors(datamodule, "train")
    test_images, test_labels = analysis.split_tensors(datamodule, "test")
    if len(torch.unique(train_labels)) < 2:
        log.info("Probes skipped: the data has no class labels")
        return {}
    idx = analysis.subsample(len(train_images), cfg.metrics.get("probe_train_images"), seed)
    train_codes = analysis.encode_images(
        model, train_images[idx.to(train_images.device)], batch_size
    )
    train_y = train_labels[idx.to(train_labels.device)].cpu()
    test_codes = analysis.encode_images(model, test_images, batch_size)
    test_y = test_labels.cpu()
    return {
        "probe/linear_acc": probes.linear_probe_accuracy(train_codes, train_y, test_codes, test_y),
        "probe/knn_acc": probes.knn_accuracy(
            train_codes, train_y, test_codes, test_y, k=int(cfg.metrics.get("knn_k", 5))
        ),
        "probe/chance": probes.majority_baseline(train_y, test_y),
    }


def anomaly_metrics(
    model: AutoencoderModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    excluded: list[int],
    batch_size: int,
) -> dict[str, float]:
    """AUROC of the reconstruction error for the classes left out of training."""
    errors = analysis.reconstruction_errors(model, images, batch_size)
    return {"anomaly/auroc": probes.anomaly_auroc(errors, labels.cpu(), excluded)}


def noise_curve_rows(
    model: AutoencoderModule, images: torch.Tensor, cfg: DictConfig, seed: int, batch_size: int
) -> list[dict[str, float]]:
    if not model.noise.enabled:
        return []
    levels = analysis.noise_levels(model.noise, cfg.metrics.get("noise_levels", "auto"))
    idx = analysis.subsample(len(images), cfg.metrics.get("noise_images"), seed)
    with analysis.seeded(seed, model.device):
        return analysis.noise_sweep(model, images[idx.to(images.device)], levels, batch_size)


def vae_metrics(
    model: AutoencoderModule, images: torch.Tensor, cfg: DictConfig, seed: int, notes: list[str]
) -> dict[str, float]:
    """Negative ELBO, importance-weighted NLL and KL (nats per image) of a VAE."""
    k = cfg.metrics.get("iw_samples", 100)
    binarize = bool(cfg.metrics.get("binarize", False))
    chunk = cfg.metrics.get("iw_chunk", MAX_DECODES_PER_CHUNK)
    idx = analysis.subsample(len(images), cfg.metrics.get("likelihood_images"), seed)
    with analysis.seeded(seed, model.device):
        values = likelihood_metrics(model, images[idx.to(images.device)], k, binarize, chunk=chunk)
    notes.append(
        f"test/iw_nll, test/neg_elbo_k: k={k} posterior samples on {len(idx):,} test images"
        + (", stochastically binarised" if binarize else "")
        + ("" if model.recon_loss == "bce" else "; decoder N(x_hat, 1/2) per pixel, no paper's")
    )
    return {
        "test/neg_elbo_k": values["neg_elbo"],
        "test/iw_nll": values["iw_nll"],
        "test/kl": values["kl"],
        "test/iw_samples": float(k),
    }


def compute_metrics(
    model: AutoencoderModule, datamodule: Any, run_cfg: DictConfig, cfg: DictConfig, seed: int
) -> tuple[dict[str, float], list[dict[str, float]], list[str]]:
    """Every number for the test split: ``(metrics, noise curve rows, notes)``."""
    options, notes = cfg.metrics, []
    metrics = run_test_split(model, datamodule, run_cfg, cfg, seed)
    batch_size = int(getattr(datamodule, "eval_batch_size", 1000))
    images, labels = analysis.split_tensors(datamodule, "test")
    metrics.update(image_metrics(model, images, batch_size, seed, bool(options.get("ssim", True))))
    if options.get("probes", True):
        metrics.update(probe_metrics(model, datamodule, cfg, seed, batch_size))
    excluded = list(OmegaConf.select(run_cfg, "data.exclude_classes", default=[]) or [])
    if excluded and options.get("anomaly", True):
        metrics.update(anomaly_metrics(model, images, labels, excluded, batch_size))
        notes.append(f"anomaly/auroc: classes {excluded} (left out of training) vs the rest")
    if supports_likelihood(model) and options.get("likelihood", True):
        metrics.update(vae_metrics(model, images, cfg, seed, notes))
    return metrics, noise_curve_rows(model, images, cfg, seed, batch_size), notes


# -------------------------------------------------------------------------- outputs
def log_to_tensorboard(writer: Any, metrics: dict[str, float], run_cfg: DictConfig) -> None:
    """Scalars at step 0, and the hparams tab linking the run's config to these numbers."""
    from torch.utils.tensorboard.summary import hparams

    for name, value in metrics.items():
        writer.add_scalar(name, value, 0)
    config = OmegaConf.to_container(run_cfg, resolve=True)
    params = flatten_config({k: v for k, v in config.items() if k != "hydra"})  # type: ignore[union-attr]
    for summary in hparams(params, metrics):
        writer._get_file_writer().add_summary(summary)
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
def load_run(cfg: DictConfig) -> tuple[Path, DictConfig, Any, AutoencoderModule]:
    """Checkpoint -> ``(path, the run's config, its data module, the trained model)``."""
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "ckpt_path is required: ae-evaluate ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    checkpoint = load_checkpoint(ckpt_path)
    run_cfg = saved_config(checkpoint, str(ckpt_path))
    apply_data_overrides(run_cfg, cfg.get("data"))
    datamodule = build_datamodule(run_cfg)
    model = rebuild_model(checkpoint, run_cfg, datamodule.dims, str(ckpt_path))
    return ckpt_path, run_cfg, datamodule, model


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; returns what ``metrics.json`` holds."""
    started = time.perf_counter()
    for key in ("probe_train_images", "noise_images", "likelihood_images"):
        check_count(cfg.metrics.get(key), f"metrics.{key}")
    check_count(cfg.get("projector_images"), "projector_images", low=0)
    gallery = GalleryOptions(**{k: v for k, v in cfg.figures.items() if k != "enabled"})
    gallery.validate("figures")

    ckpt_path, run_cfg, datamodule, model = load_run(cfg)
    seed = int(cfg.seed if cfg.get("seed") is not None else run_cfg.get("seed") or 0)
    metrics, noise_rows, notes = compute_metrics(model, datamodule, run_cfg, cfg, seed)

    out_dir = Path(cfg.paths.output_dir)
    run_dir = training_run_dir(ckpt_path.resolve(), run_cfg)
    images, labels = analysis.split_tensors(datamodule, "test")
    batch_size = int(getattr(datamodule, "eval_batch_size", 1000))
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tensorboard"))
    try:
        figures: dict[str, Path] = {}
        if cfg.figures.get("enabled", True):
            gallery.seed = seed
            figures = render_gallery(
                FigureSink(out_dir / "figures", writer),
                model,
                images,
                labels,
                class_names_of(datamodule),
                TrainingHistory.from_event_dir(find_event_dir(run_dir)),
                noise_rows,
                gallery,
                batch_size,
            )
        if cfg.get("projector_images"):
            write_projector(
                writer,
                model,
                images,
                labels,
                class_names_of(datamodule),
                int(cfg.projector_images),
                seed=seed,
                batch_size=batch_size,
            )
        log_to_tensorboard(writer, metrics, run_cfg)
    finally:
        writer.close()

    result = {
        "checkpoint": str(ckpt_path),
        "training_run": str(run_dir),
        "data": getattr(datamodule, "source_description", type(datamodule).__name__),
        "model": type(model).__name__,
        "noise": repr(model.noise),
        "seed": seed,
        "metrics": metrics,
        "notes": notes,
        "noise_curve": noise_rows,
        "figures": {name: str(path) for name, path in figures.items()},
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

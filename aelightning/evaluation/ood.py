"""A trained model scored on another dataset: ``ae-evaluate ckpt_path=... data=<group>``.

Selecting a data group (``data=fashion_mnist``, ``data=anime data.root=OTHER``) makes
``ae-evaluate`` score the checkpoint on that data's test split instead of its own, and compare
the two: the usual out-of-distribution check. Numbers (``metrics.json``, TensorBoard scalars):

- ``test/mse``, ``test/psnr``, ``test/bce``, ``test/ssim``: the other data's test split through
  the model's test-time pass (its corruption on, as ``trainer.test`` runs it), seeded;
- ``ood/in_mse``, ``ood/out_mse``: mean per-image MSE of the deterministic reconstruction of
  clean images, on the run's own test split and on the other one;
- ``ood/auroc``: how well that error tells the other data (positive) from the run's own
  (torchmetrics' binary AUROC; 0.5 is chance, 1 perfect).

The run's own test split is rebuilt from the config stored in the checkpoint; where it cannot be
read now (files moved), the ``ood/*`` numbers are left out with a note. The other data must give
images of the model's shape, else one sentence says which key to change.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics.functional.classification import binary_auroc

from aelightning.checkpointing.atomic import write_json
from aelightning.checkpointing.checkpoint import load_model_from_checkpoint
from aelightning.errors import AELightningError, ConfigError
from aelightning.evaluation import analysis, plots
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


def other_data_selected(cfg: DictConfig) -> bool:
    """Whether ``ae-evaluate`` was given a data group (a ``data._target_``) to score on."""
    return OmegaConf.select(cfg, "data._target_", default=None) is not None


def other_data_config(cfg: DictConfig, seed: int) -> DictConfig:
    """The selected data group's config: null keys dropped (the data module's defaults, which
    also sheds ``ae-evaluate``'s own null ``data.*`` overrides), the seed set."""
    data = OmegaConf.to_container(cfg.data, resolve=False)
    data = {k: v for k, v in data.items() if v is not None}  # type: ignore[union-attr]
    data["seed"] = seed  # batch order and the train/val split only: test splits are fixed
    resolved = OmegaConf.create({"data": data, "paths": cfg.paths, "seed": seed})
    return OmegaConf.create(OmegaConf.to_container(resolved.data, resolve=True))


def test_images(datamodule: Any) -> torch.Tensor:
    datamodule.setup("test")
    images, _ = analysis.split_tensors(datamodule, "test")
    return images


def check_shape(images: torch.Tensor, model: AutoencoderModule, what: str) -> None:
    shape, expected = list(images.shape[1:]), list(model.net.input_shape)
    if shape != expected:
        hint = " (set data.image_size to match)" if shape[1:] != expected[1:] else ""
        raise ConfigError(
            f"{what} gives images of shape {shape} (C, H, W) but the model was trained on "
            f"{expected}{hint}; score it on data with the model's image shape."
        )


def auroc(in_errors: torch.Tensor, out_errors: torch.Tensor) -> float:
    """AUROC of the error for telling ``out`` (positive) from ``in`` (negative)."""
    scores = torch.cat([in_errors, out_errors]).float()
    target = torch.cat([torch.zeros(len(in_errors)), torch.ones(len(out_errors))]).long()
    return float(binary_auroc(scores, target))


def error_histogram(in_errors: torch.Tensor, out_errors: torch.Tensor, names: tuple[str, str]):
    """Overlaid histograms of the two splits' per-image reconstruction errors."""
    fig = plots.new_figure(6, 3.5)
    ax = fig.add_subplot()
    both = torch.cat([in_errors, out_errors])
    bins = torch.linspace(float(both.min()), float(both.max()) + 1e-12, 50).numpy()
    for errors, name in zip((in_errors, out_errors), names, strict=True):
        ax.hist(errors.numpy(), bins=bins, alpha=0.6, density=True, label=f"{name} ({len(errors)})")
    ax.set_xlabel("per-image MSE of the reconstruction")
    ax.set_ylabel("density")
    ax.legend()
    return fig


def evaluate_other_data(cfg: DictConfig) -> dict[str, Any]:
    """Score ``cfg.ckpt_path`` on the selected data group; returns what ``metrics.json`` holds
    (the same fields as ``ae-evaluate``'s own result)."""
    started = time.perf_counter()
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "ckpt_path is required: ae-evaluate ckpt_path=<run dir>/checkpoints/last.ckpt"
        )
    ckpt_path = Path(str(cfg.ckpt_path)).expanduser()
    model = load_model_from_checkpoint(ckpt_path)
    run_cfg = OmegaConf.create(model.run_config or {})
    seed = int(cfg.seed if cfg.get("seed") is not None else run_cfg.get("seed") or 0)
    accelerator = str(cfg.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        model = model.to("cuda")

    other = instantiate(other_data_config(cfg, seed), _recursive_=False)
    out_images = test_images(other)
    other_name = getattr(other, "source_description", None) or type(other).__name__
    check_shape(out_images, model, f"data ({other_name})")
    batch_size = int(getattr(other, "eval_batch_size", None) or 256)
    with analysis.seeded(seed, model.device):
        scores = analysis.reconstruction_scores(model, out_images, batch_size)
    metrics = {f"test/{k}": float(v.double().mean()) for k, v in scores.items()}
    notes = [f"test/*: {len(out_images):,} test images of the other data, test-time pass"]

    out_errors = analysis.reconstruction_errors(model, out_images, batch_size)
    in_name = "the run's own data"
    in_errors = None
    try:
        own = instantiate(run_cfg.data, _recursive_=False)
        in_errors = analysis.reconstruction_errors(model, test_images(own), batch_size)
        in_name = getattr(own, "source_description", None) or in_name
    except (AELightningError, OSError) as exc:
        notes.append(f"ood/*: left out, the run's own test split cannot be read now ({exc})")
    figures: dict[str, str] = {}
    out_dir = Path(cfg.paths.output_dir)
    if in_errors is not None:
        metrics["ood/in_mse"] = float(in_errors.double().mean())
        metrics["ood/out_mse"] = float(out_errors.double().mean())
        metrics["ood/auroc"] = auroc(in_errors, out_errors)
        notes.append(
            f"ood/auroc: per-image MSE of clean reconstructions, {len(out_errors):,} images of "
            f"the other data (positive) vs {len(in_errors):,} of the run's own test split"
        )
        fig = error_histogram(in_errors, out_errors, ("run's own test split", "other data"))
        figures = {k: str(v) for k, v in write_outputs(out_dir, metrics, fig).items()}
    else:
        write_outputs(out_dir, metrics, None)
    result = {
        "checkpoint": str(ckpt_path),
        "data": f"{other_name}; in-distribution: {in_name}",
        "model": type(model).__name__,
        "noise": repr(model.noise),
        "seed": seed,
        "metrics": metrics,
        "notes": notes,
        "noise_curve": [],
        "figures": figures,
        "output_dir": str(out_dir),
        "seconds": time.perf_counter() - started,
    }
    write_json(out_dir / "metrics.json", result)
    return result


def write_outputs(out_dir: Path, metrics: dict[str, float], fig: Any) -> dict[str, Path]:
    """TensorBoard scalars (step 0) and the error histogram as ``figures/ood_errors.png``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tensorboard"))
    try:
        for name, value in metrics.items():
            writer.add_scalar(name, value, 0)
        sink = plots.FigureSink(out_dir / "figures", writer)
        if fig is not None:
            sink.add("ood_errors", fig)
        return sink.paths
    finally:
        writer.close()

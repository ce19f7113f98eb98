"""The numbers ``ae-evaluate`` reports for a test split: the run's own test pass, BCE and
SSIM, probes on the codes, the anomaly AUROC of left-out classes and a VAE's likelihood."""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from typing import Any

import lightning as L
import torch

from aelightning.errors import ConfigError
from aelightning.evaluation import analysis, probes
from aelightning.evaluation.likelihood import likelihood_metrics, supports_likelihood
from aelightning.evaluation.metrics import scalar_metrics
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


def check_count(value: Any, key: str, low: int = 1) -> None:
    """A number of images: null (all of them) or an integer >= ``low``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise ConfigError(f"{key} must be null (all) or an integer >= {low}, got {value!r}.")


@dataclass
class MetricOptions:
    """Which numbers to compute (``conf/evaluate.yaml``'s ``metrics`` block, where the
    defaults and their meaning are)."""

    ssim: bool
    probes: bool
    probe_train_images: int | None
    knn_k: int
    anomaly: bool
    likelihood: bool
    iw_samples: int
    iw_chunk: int
    binarize: bool
    likelihood_images: int | None

    @classmethod
    def from_config(cls, block: Any) -> MetricOptions:
        """The fields of the config block (other keys, e.g. the noise curve's, are not ours)."""
        return cls(**{f.name: block.get(f.name) for f in fields(cls)})

    def validate(self, prefix: str = "metrics") -> MetricOptions:
        for key in ("probe_train_images", "likelihood_images"):
            check_count(getattr(self, key), f"{prefix}.{key}")
        return self


@dataclass
class RunTestSetup:
    """How the training run ran ``trainer.test`` (so ``test/loss`` reproduces), and what it
    left out of training (``data.exclude_classes``)."""

    accelerator: str = "auto"
    precision: str | None = None  # None: Lightning's default, 32-true
    deterministic: bool = False
    excluded_classes: tuple[int, ...] = ()


def run_test_split(
    model: AutoencoderModule, datamodule: Any, test: RunTestSetup, seed: int
) -> dict[str, float]:
    """``trainer.test`` as the training run ran it (same precision, seeded the same way)."""
    trainer = L.Trainer(
        accelerator=test.accelerator,
        devices=1,
        precision=test.precision,  # type: ignore[arg-type]
        deterministic=test.deterministic,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    L.seed_everything(seed, workers=True, verbose=False)
    trainer.test(model, datamodule=datamodule, verbose=False)
    model.to(trainer.strategy.root_device)  # teardown moved it back to the CPU
    return scalar_metrics(trainer.callback_metrics)


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
    model: AutoencoderModule, datamodule: Any, options: MetricOptions, seed: int, batch_size: int
) -> dict[str, float]:
    """Linear-probe and k-NN accuracy of the codes (train codes fit, test codes score)."""
    train_images, train_labels = analysis.split_tensors(datamodule, "train")
    test_images, test_labels = analysis.split_tensors(datamodule, "test")
    if len(torch.unique(train_labels)) < 2:
        log.info("Probes skipped: the data has no class labels")
        return {}
    idx = analysis.subsample(len(train_images), options.probe_train_images, seed)
    train_codes = analysis.encode_images(
        model, train_images[idx.to(train_images.device)], batch_size
    )
    train_y = train_labels[idx.to(train_labels.device)].cpu()
    test_codes = analysis.encode_images(model, test_images, batch_size)
    test_y = test_labels.cpu()
    return {
        "probe/linear_acc": probes.linear_probe_accuracy(train_codes, train_y, test_codes, test_y),
        "probe/knn_acc": probes.knn_accuracy(
            train_codes, train_y, test_codes, test_y, k=int(options.knn_k)
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


def vae_metrics(
    model: AutoencoderModule,
    images: torch.Tensor,
    options: MetricOptions,
    seed: int,
    notes: list[str],
) -> dict[str, float]:
    """Negative ELBO, importance-weighted NLL and KL (nats per image) of a VAE."""
    k, binarize = options.iw_samples, bool(options.binarize)
    idx = analysis.subsample(len(images), options.likelihood_images, seed)
    with analysis.seeded(seed, model.device):
        values = likelihood_metrics(
            model, images[idx.to(images.device)], k, binarize, chunk=options.iw_chunk
        )
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


def evaluation_metrics(
    model: AutoencoderModule,
    datamodule: Any,
    options: MetricOptions,
    test: RunTestSetup,
    seed: int,
    batch_size: int,
) -> tuple[dict[str, float], list[str]]:
    """Every number for the test split: ``(metrics, notes)``."""
    notes: list[str] = []
    metrics = run_test_split(model, datamodule, test, seed)
    images, labels = analysis.split_tensors(datamodule, "test")
    metrics.update(image_metrics(model, images, batch_size, seed, bool(options.ssim)))
    if options.probes:
        metrics.update(probe_metrics(model, datamodule, options, seed, batch_size))
    excluded = list(test.excluded_classes)
    if excluded and options.anomaly:
        metrics.update(anomaly_metrics(model, images, labels, excluded, batch_size))
        notes.append(f"anomaly/auroc: classes {excluded} (left out of training) vs the rest")
    if supports_likelihood(model) and options.likelihood:
        metrics.update(vae_metrics(model, images, options, seed, notes))
    return metrics, notes

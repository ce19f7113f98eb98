"""One inspection of a trained model, the entry shared by ``ae-evaluate`` and the end of
training (:class:`~aelightning.callbacks.figures.TrainingFigures`, the projector callback).

:class:`InspectionOptions` is the one schema: which numbers (``metrics``, off at the end of
training, where the run tests itself), the gallery's sizes (``figures``), the noise curve, the
projector. :func:`inspect_model` computes and draws what they ask for on one split and returns it;
the callers only say where the figures go and print or save the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from aelightning.evaluation import analysis
from aelightning.evaluation.gallery import GalleryOptions, class_names_of, render_gallery
from aelightning.evaluation.history import TrainingHistory
from aelightning.evaluation.plots import FigureSink
from aelightning.evaluation.projector import write_projector
from aelightning.evaluation.scores import (
    MetricOptions,
    RunTestSetup,
    check_count,
    evaluation_metrics,
)
from aelightning.models.base import AutoencoderModule


@dataclass
class InspectionOptions:
    """What :func:`inspect_model` computes and draws.

    Attributes:
        metrics: the test split's numbers (needs ``run_test``); None computes none.
        figures: the gallery's sizes; None draws no gallery.
        noise_levels: the noise curve of a noisy run: ``auto``, a list of levels, or None.
        noise_images: images per noise level (a seeded subsample; None = all).
        projector_images: codes put in TensorBoard's projector (needs a writer); 0 = none.
        run_test: how the training run ran its test pass, for ``metrics``.
        seed: of every subsample and draw (figures and numbers are reproducible).
        batch_size: images per forward pass.
        split: the split inspected (``metrics`` always use the test split).
        projector_tag: the embedding's name in the PROJECTOR tab.
    """

    metrics: MetricOptions | None = None
    figures: GalleryOptions | None = None
    noise_levels: Sequence[float] | str | None = None
    noise_images: int | None = None
    projector_images: int = 0
    run_test: RunTestSetup = field(default_factory=RunTestSetup)
    seed: int = 0
    batch_size: int = 1000
    split: str = "test"
    projector_tag: str = "codes"

    @classmethod
    def from_evaluate_config(cls, cfg: Any) -> InspectionOptions:
        """``conf/evaluate.yaml``'s ``metrics``, ``figures`` and ``projector_images``, checked
        now (before any loading), each bad value named by its key. The training run's own
        settings come in with :meth:`for_run`."""
        metrics = MetricOptions.from_config(cfg.metrics).validate("metrics")
        noise_images = cfg.metrics.get("noise_images")
        check_count(noise_images, "metrics.noise_images")
        check_count(cfg.get("projector_images"), "projector_images", low=0)
        sizes = {k: v for k, v in cfg.figures.items() if k != "enabled"}
        figures = GalleryOptions(**sizes).validate("figures")
        return cls(
            metrics=metrics,
            figures=figures if cfg.figures.get("enabled", True) else None,
            noise_levels=cfg.metrics.get("noise_levels"),
            noise_images=noise_images,
            projector_images=int(cfg.get("projector_images") or 0),
            run_test=RunTestSetup(
                accelerator=cfg.get("accelerator") or "auto", precision=cfg.get("precision")
            ),
        )

    def for_run(self, run_cfg: Any, seed: int | None, batch_size: int) -> InspectionOptions:
        """These options for a training run's model and data: its seed unless ``seed`` is
        given, its precision unless one was asked for, the classes it left out."""
        select = partial(OmegaConf.select, run_cfg)
        run_test = replace(
            self.run_test,
            precision=self.run_test.precision or select("trainer.precision") or "32-true",
            deterministic=bool(select("trainer.deterministic", default=False)),
            excluded_classes=tuple(select("data.exclude_classes", default=[]) or ()),
        )
        run_seed = seed if seed is not None else int(run_cfg.get("seed") or 0)
        return replace(self, run_test=run_test, seed=run_seed, batch_size=batch_size)


@dataclass
class Inspection:
    """What one inspection found: numbers, the noise curve and where the figures are."""

    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    noise_curve: list[dict[str, float]] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)
    projector_points: int = 0


def inspect_model(
    model: AutoencoderModule,
    datamodule: Any,
    options: InspectionOptions,
    sink: FigureSink,
    history: TrainingHistory | None = None,
) -> Inspection:
    """Compute and draw what ``options`` ask for; figures go to ``sink`` (its folder and its
    TensorBoard writer, which also receives the projector)."""
    found = Inspection()
    if options.metrics is not None:
        found.metrics, found.notes = evaluation_metrics(
            model,
            datamodule,
            options.metrics,
            options.run_test,
            options.seed,
            options.batch_size,
        )
    images, labels = analysis.split_tensors(datamodule, options.split)
    class_names = class_names_of(datamodule)
    if options.noise_levels is not None:
        found.noise_curve = analysis.noise_curve(
            model,
            images,
            options.noise_levels,
            options.noise_images,
            options.seed,
            options.batch_size,
        )
    if options.figures is not None:
        found.figures = render_gallery(
            sink,
            model,
            images,
            labels,
            replace(options.figures, seed=options.seed),
            class_names,
            history,
            found.noise_curve,
            options.batch_size,
        )
    if options.projector_images and sink.writer is not None:
        found.projector_points = write_projector(
            sink.writer,
            model,
            images,
            labels,
            class_names,
            options.projector_images,
            sink.step,
            options.projector_tag,
            options.seed,
            options.batch_size,
        )
    return found

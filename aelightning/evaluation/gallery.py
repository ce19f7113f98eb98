"""The set of figures for one trained model, shared by ``ae-evaluate`` and the end of training.

Which figures a model gets follows from what it can do: every model gets reconstructions,
loss/learning-rate curves (when its run logged them) and code maps (a direct 1-3-D scatter
when the code has at most 3 numbers, otherwise PCA and t-SNE); a model with ``sample`` gets
prior samples; a 2-D latent gets the manifold grid; a noisy run gets the noise-level curve.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from aelightning.errors import ConfigError
from aelightning.evaluation import analysis, plots
from aelightning.evaluation.history import TrainingHistory
from aelightning.models.base import AutoencoderModule

log = logging.getLogger("aelightning")


@dataclass
class GalleryOptions:
    """Sizes of the figures; their values (chosen to keep a CPU run to seconds) are in
    ``conf/gallery/default.yaml``, shared by ``ae-evaluate`` and the training callback.

    Attributes:
        max_points: codes drawn in scatter/PCA maps (a seeded subsample of the split).
        tsne_points: codes in the t-SNE map (its cost grows ~quadratically); 0 switches it off.
        num_images: images in the reconstruction grid.
        num_samples: prior samples drawn for models with ``sample``.
        interpolation_pairs / interpolation_steps: rows and columns of the latent walk.
        manifold_size: the 2-D manifold grid is ``size x size`` images.
        seed: for the subsamples, the noise and the samples (figures are reproducible).
    """

    max_points: int
    tsne_points: int
    num_images: int
    num_samples: int
    interpolation_pairs: int
    interpolation_steps: int
    manifold_size: int
    seed: int = 0

    def validate(self, prefix: str) -> GalleryOptions:
        """Refuse counts that are not whole numbers >= 0 (``max_points`` >= 1), naming
        ``<prefix>.<field>`` as the user types it; returns self."""
        for name, value in vars(self).items():
            low = 1 if name in ("max_points", "num_images") else 0
            if name != "seed" and (
                isinstance(value, bool) or not isinstance(value, int) or value < low
            ):
                raise ConfigError(f"{prefix}.{name} must be an integer >= {low}, got {value!r}.")
        return self


def code_figures(
    sink: plots.FigureSink,
    model: AutoencoderModule,
    images: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    options: GalleryOptions,
    suffix: str = "",
    tsne: bool = True,
    batch_size: int = 1000,
) -> Tensor:
    """Code maps coloured by label; returns the codes of the subsample (for the manifold)."""
    idx = analysis.subsample(len(images), options.max_points, options.seed)
    codes = analysis.encode_images(model, images[idx.to(images.device)], batch_size)
    labels = labels[idx.to(labels.device)].cpu()
    dims = codes.shape[1]
    if dims <= 3:
        sink.add(
            f"codes_{dims}d{suffix}",
            plots.code_scatter(codes, labels, class_names, title=f"{dims}-D codes"),
        )
        return codes
    pca = analysis.embed_2d(codes, "pca", options.seed)
    sink.add(
        f"codes_pca{suffix}",
        plots.code_scatter(
            pca, labels, class_names, f"PCA of {dims}-D codes", axis_names=("PC 1", "PC 2")
        ),
    )
    if tsne and options.tsne_points > 0:
        n = min(options.tsne_points, len(codes))
        points = analysis.embed_2d(codes[:n], "tsne", options.seed)
        sink.add(
            f"codes_tsne{suffix}",
            plots.code_scatter(
                points,
                labels[:n],
                class_names,
                f"t-SNE of {dims}-D codes",
                axis_names=("t-SNE 1", "t-SNE 2"),
            ),
        )
    return codes


def history_figures(sink: plots.FigureSink, history: TrainingHistory) -> None:
    """Loss curves (train vs val per epoch; training loss per step) and the learning-rate curve,
    when logged."""
    if history.train_loss or history.val_loss:
        sink.add(
            "loss_curves",
            plots.curves(
                {"train": history.train_loss, "val": history.val_loss},
                xlabel="epoch",
                ylabel="loss",
                title="training and validation loss",
            ),
        )
    if len(history.train_loss_steps) > 1:
        sink.add(
            "loss_steps",
            plots.curves(
                {"train": history.train_loss_steps},
                xlabel="step",
                ylabel="loss",
                title="training loss per step",
            ),
        )
    if history.learning_rates:
        sink.add(
            "learning_rate",
            plots.curves(
                history.learning_rates, xlabel="step", ylabel="learning rate", title="learning rate"
            ),
        )


def generative_figures(
    sink: plots.FigureSink,
    model: AutoencoderModule,
    images: Tensor,
    codes: Tensor,
    options: GalleryOptions,
) -> None:
    """Prior samples (models with ``sample``), a latent interpolation and the 2-D manifold."""
    sample = getattr(model, "sample", None)
    if callable(sample) and options.num_samples > 0:
        with analysis.inference(model):
            samples = sample(options.num_samples).float().clamp(0, 1).cpu()
        sink.add("samples", plots.image_grid(samples, nrow=8, title="samples from the prior"))
    pairs = min(options.interpolation_pairs, len(images) // 2)
    if pairs > 0 and options.interpolation_steps >= 2:
        path = analysis.interpolate(
            model, images[:pairs], images[pairs : 2 * pairs], options.interpolation_steps
        )
        sink.add(
            "interpolation",
            plots.image_grid(path, nrow=options.interpolation_steps, title="latent interpolation"),
        )
    if tuple(model.net.latent_shape) == (2,) and options.manifold_size >= 2:
        grid = analysis.manifold_grid(model, codes, options.manifold_size)
        sink.add(
            "manifold",
            plots.image_grid(grid, nrow=options.manifold_size, title="2-D latent manifold"),
        )


def noise_figure(
    sink: plots.FigureSink, model: AutoencoderModule, rows: Sequence[dict[str, float]]
) -> None:
    if rows:
        level = analysis.noise_level_attr(model.noise) or "level"
        sink.add("noise_curve", plots.noise_curve(rows, type(model.noise).__name__, level))


def render_gallery(
    sink: plots.FigureSink,
    model: AutoencoderModule,
    images: Tensor,
    labels: Tensor,
    options: GalleryOptions,
    class_names: Sequence[str] = (),
    history: TrainingHistory | None = None,
    noise_rows: Sequence[dict[str, float]] = (),
    batch_size: int = 1000,
) -> dict[str, Path]:
    """Draw every figure that applies to ``model`` on ``images`` (one split) into ``sink``.

    Runs on a forked RNG seeded with ``options.seed``: the figures are reproducible and the
    caller's random state (e.g. training's) is left as it was.
    """
    with analysis.seeded(options.seed, model.device):
        n = min(options.num_images, len(images))
        with analysis.inference(model):
            x = analysis.to_unit_float(images[:n], model.device)
            out = model.model_step((x,))
        examples = {"input": x, "output": out.x_hat}
        if model.noise.enabled:
            examples["noisy"] = out.x_in
        sink.add("reconstructions", plots.reconstruction_grid(examples))
        if history is not None:
            history_figures(sink, history)
        codes = code_figures(
            sink, model, images, labels, class_names, options, batch_size=batch_size
        )
        generative_figures(sink, model, images, codes, options)
        noise_figure(sink, model, noise_rows)
    log.info("Figures: %s", ", ".join(sorted(sink.paths)) or "(TensorBoard only)")
    return dict(sink.paths)


def class_names_of(datamodule: Any) -> tuple[str, ...]:
    """The data module's class names, if it has any."""
    return tuple(getattr(datamodule, "class_names", ()) or ())

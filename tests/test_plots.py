"""Every drawing is a valid PNG with content, in the run dir and in TensorBoard."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from aelightning.data.mnist import load_mnist_sample
from aelightning.evaluation import gallery, plots
from aelightning.evaluation.history import TrainingHistory
from aelightning.loggers import RunCSVLogger
from tests.tbutil import read_events


def assert_png_with_content(source: Path | bytes, min_side: int = 28) -> np.ndarray:
    """A readable PNG of a reasonable size whose pixels are not all the same."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(data)).verify()  # raises on a truncated or corrupt file
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
    assert min(pixels.shape[:2]) >= min_side, pixels.shape
    assert pixels.var() > 0
    return pixels


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_mnist_sample()
    return images[::10][:300].float() / 255.0, labels[::10][:300]


def test_image_grids_show_the_images(digits):
    images, _ = digits
    examples = {
        "input": images[:8],
        "noisy": (images[:8] + 0.3).clamp(0, 1),
        "output": images[8:16],
    }
    grid = assert_png_with_content(plots.figure_png(plots.reconstruction_grid(examples)))
    blank = {k: torch.zeros_like(v) for k, v in examples.items()}
    blank_grid = plots.png_pixels(plots.figure_png(plots.reconstruction_grid(blank)))
    assert grid.shape == blank_grid.shape and np.abs(grid - blank_grid).mean() > 1.0
    rgb = images[:12].expand(-1, 3, -1, -1) * torch.tensor([1.0, 0.5, 0.2]).view(1, 3, 1, 1)
    assert_png_with_content(plots.figure_png(plots.image_grid(rgb, nrow=4, title="rgb")))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_code_scatter_colours_classes(digits, dims):
    images, labels = digits
    points = images.flatten(1)[:, 300 : 300 + dims * 40 : 40].numpy()  # real pixel intensities
    fig = plots.code_scatter(points, labels, [str(i) for i in range(10)], title=f"{dims}-D")
    pixels = assert_png_with_content(plots.figure_png(fig))
    colours = {tuple(p) for p in pixels.reshape(-1, 3).astype(int)[::7]}
    assert len(colours) > 20  # ten class colours plus their anti-aliased edges


def test_curves_and_noise_curve():
    fig = plots.curves(
        {"train": [(1, 0.2), (2, 0.1), (3, 0.08)], "val": [(1, 0.15), (2, 0.11), (3, 0.1)]},
        xlabel="epoch",
        ylabel="loss",
    )
    assert_png_with_content(plots.figure_png(fig))
    rows = [
        {"level": lv, "psnr_noisy": pn, "psnr_out": po, "gain": po - pn}
        for lv, pn, po in [(0.0, 100.0, 18.0), (0.25, 13.0, 17.5), (0.5, 8.0, 16.0)]
    ]
    assert_png_with_content(plots.figure_png(plots.noise_curve(rows, "GaussianNoise", "std")))


def test_sink_writes_png_and_tensorboard_image(tmp_path, digits):
    images, _ = digits
    writer = SummaryWriter(str(tmp_path / "tb"))
    sink = plots.FigureSink(tmp_path / "figures", writer, step=7)
    for epoch in range(2):  # per-epoch figures share one tag (TensorBoard's step slider)
        sink.add(f"grid_epoch{epoch:03d}", plots.image_grid(images[:16], nrow=8))
    writer.close()
    for epoch in range(2):
        assert_png_with_content(tmp_path / "figures" / f"grid_epoch{epoch:03d}.png")
    acc = read_events(tmp_path / "tb")
    assert acc.Tags()["images"] == ["figures/grid"]
    logged = acc.Images("figures/grid")
    assert len(logged) == 2 and logged[0].step == 7
    assert_png_with_content(logged[0].encoded_image_string)
    with pytest.raises(ValueError, match="plain file name"):
        sink.add("../escape", plots.image_grid(images[:4], nrow=2))


def test_history_reads_the_step_loss_and_a_one_epoch_run_gets_a_curve(tmp_path):
    """Rows the way Lightning's CSV logger writes them: the step loss with its step and epoch."""
    logger = RunCSVLogger(str(tmp_path))
    for i in range(0, 30, 5):
        logger.log_metrics({"train/loss": 1.0 / (i + 1), "epoch": 0}, step=i)
    logger.log_metrics({"train/loss_epoch": 0.3, "val/loss": 0.2, "epoch": 0}, step=29)
    logger.finalize("success")
    history = TrainingHistory.from_run_dir(tmp_path)
    assert history.train_loss_steps == [(i, pytest.approx(1 / (i + 1))) for i in range(0, 30, 5)]
    assert history.train_loss == [(1, pytest.approx(0.3))]
    assert "train/loss" not in history.epochs  # the step values are not an epoch curve
    sink = plots.FigureSink(tmp_path / "figures")
    gallery.history_figures(sink, TrainingHistory(train_loss_steps=history.train_loss_steps))
    assert set(sink.paths) == {"loss_steps"}
    assert_png_with_content(sink.paths["loss_steps"])

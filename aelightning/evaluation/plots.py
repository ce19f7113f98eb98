"""Figures as the seeds draw them, rendered by matplotlib's Agg backend (no display needed).

Drawing only: every function takes arrays/tensors and returns a ``matplotlib.figure.Figure`` on
an Agg canvas, built without pyplot: no global state, nothing to close, safe in any process.
:class:`FigureSink` writes a figure as PNG into a run's ``figures/`` folder and logs the same
pixels to TensorBoard.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid

#: (x, y) points of one curve
Series = Sequence[tuple[float, float]]
DPI = 100


# ----------------------------------------------------------------------------- output
def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure drawn by the Agg backend."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def png_pixels(png: bytes) -> np.ndarray:
    """PNG bytes -> ``[H, W, 3]`` uint8 (what TensorBoard's image tab shows)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class FigureSink:
    """Save figures as ``<folder>/<name>.png`` and log them as ``<prefix>/<name>`` images.

    Args:
        folder: where PNGs go (created on first use); None logs to TensorBoard only.
        writer: a TensorBoard ``SummaryWriter`` (e.g. ``TensorBoardLogger.experiment``) or None.
        step: global step the images are logged at.
        prefix: TensorBoard tag prefix.
    """

    def __init__(
        self, folder: Path | str | None, writer: Any = None, step: int = 0, prefix: str = "figures"
    ):
        self.folder = Path(folder) if folder is not None else None
        self.writer = writer
        self.step = int(step)
        self.prefix = prefix
        self.paths: dict[str, Path] = {}

    def add(self, name: str, fig: Figure) -> Path | None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"figure name {name!r} must be a plain file name")
        png = figure_png(fig)
        path = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{name}.png"
            path.write_bytes(png)
            self.paths[name] = path
        if self.writer is not None:
            tag = f"{self.prefix}/{name.split('_epoch')[0]}"
            self.writer.add_image(tag, png_pixels(png), self.step, dataformats="HWC")
        return path


# ------------------------------------------------------------------------------ images
def image_grid(
    images: Tensor,
    nrow: int,
    title: str = "",
    row_labels: Sequence[str] | None = None,
    scale: float = 0.6,
) -> Figure:
    """Images ``[N, C, H, W]`` (values in [0, 1]) in rows of ``nrow``, rows optionally named."""
    images = images.detach().float().clamp(0, 1).cpu()
    nrow = max(1, min(int(nrow), len(images)))
    grid = make_grid(images, nrow=nrow, padding=2, pad_value=1.0)  # [3, H', W']
    rows = (len(images) + nrow - 1) // nrow
    height, width = images.shape[-2:]
    fig = new_figure(max(2.0, scale * nrow * width / 28), max(1.2, scale * rows * height / 28))
    ax = fig.add_subplot()
    pixels = grid.permute(1, 2, 0).numpy()
    if images.shape[1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        ax.set_yticks([2 + (height + 2) * (i + 0.5) for i in range(len(row_labels))])
        ax.set_yticklabels(list(row_labels))
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def reconstruction_grid(examples: Mapping[str, Tensor], title: str = "") -> Figure:
    """Rows ``input | noisy | output`` (noisy only when present), one column per image."""
    names = [k for k in ("input", "noisy", "output") if k in examples]
    n = min(len(examples[k]) for k in names)
    images = torch.cat([examples[k][:n].detach().float().cpu() for k in names])
    return image_grid(images, nrow=n, title=title or "reconstructions", row_labels=names)


# ------------------------------------------------------------------------------ curves
def curves(
    series: Mapping[str, Series],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
) -> Figure:
    """One line per named series; markers when a series has few points (short runs)."""
    fig = new_figure(6, 4)
    ax = fig.add_subplot()
    for label, points in series.items():
        if not points:
            continue
        x, y = zip(*points, strict=True)
        ax.plot(x, y, label=label, marker="o" if len(points) <= 30 else None, markersize=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xlabel in ("epoch", "step"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if len(series) > 1:
        ax.legend()
    if title:
        ax.set_title(title)
    return fig


def noise_curve(rows: Sequence[Mapping[str, float]], noise_name: str, level_name: str) -> Figure:
    """PSNR of the noisy input and of the model's output against the noise level."""
    noisy = [(r["level"], r["psnr_noisy"]) for r in rows if r["level"] > 0]
    return curves(
        {
            "noisy input": noisy,  # level 0 is the clean image itself: PSNR is infinite
            "model output": [(r["level"], r["psnr_out"]) for r in rows],
        },
        xlabel=f"{noise_name} {level_name}",
        ylabel="PSNR vs clean image (dB)",
        title="denoising across noise levels",
    )


# ------------------------------------------------------------------------------ codes
def _colours(n_classes: int) -> Any:
    return matplotlib.colormaps["tab10" if n_classes <= 10 else "tab20"]


def code_scatter(
    points: np.ndarray | Tensor,
    labels: np.ndarray | Tensor,
    class_names: Sequence[str] = (),
    title: str = "",
    axis_names: Sequence[str] | None = None,
    max_legend: int = 20,
) -> Figure:
    """Points ``[N, d]`` (d = 1, 2 or 3) coloured by label; 3-D gets a 3-D axis.

    A 1-D code is drawn against the label (a strip per class, jittered), which shows how
    well one number separates the classes.
    """
    points = points.detach().cpu().numpy() if isinstance(points, Tensor) else np.asarray(points)
    labels = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    dims = points.shape[1]
    if dims not in (1, 2, 3):
        raise ValueError(f"code_scatter draws 1-3 dimensions, got {dims}")
    classes = np.unique(labels)
    labelled = len(classes) > 1
    cmap = _colours(len(classes))
    axis_names = list(axis_names or [f"code {i}" for i in range(dims)])
    fig = new_figure(7, 6) if dims == 3 else new_figure(6.5, 5)
    ax = fig.add_subplot(projection="3d" if dims == 3 else None)
    rng = np.random.default_rng(0)
    for i, c in enumerate(classes):
        sel = labels == c
        name = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(c)
        colour = cmap(i % cmap.N) if labelled else "tab:blue"
        p = points[sel]
        if dims == 1:
            ax.scatter(
                p[:, 0], int(c) + rng.uniform(-0.3, 0.3, len(p)), s=4, color=colour, label=name
            )
        elif dims == 2:
            ax.scatter(p[:, 0], p[:, 1], s=4, color=colour, label=name, alpha=0.8)
        else:
            ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=4, color=colour, label=name, alpha=0.8)
    ax.set_xlabel(axis_names[0])
    if dims == 1:
        ax.set_ylabel("label")
    else:
        ax.set_ylabel(axis_names[1])
    if dims == 3:
        ax.set_zlabel(axis_names[2])
    if labelled and len(classes) <= max_legend:
        ax.legend(markerscale=3, fontsize=8, loc="best", ncols=2 if len(classes) > 10 else 1)
    if title:
        ax.set_title(title)
    return fig

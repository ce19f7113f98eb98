"""``ae-reconstruct ckpt_path=... input=FILE_OR_FOLDER output=FOLDER``: a trained model on a
user's own image files (``conf/reconstruct.yaml``).

Each readable image is decoded like the training data, optionally corrupted (``noise=...`` or
``run_noise=true``, to show denoising), reconstructed and written as a PNG with the same
relative name; ``grid.png`` shows input | noisy | reconstruction side by side and
``errors.csv`` holds each image's MSE and PSNR against the clean input (an anomaly score).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from rich.console import Console
from torch import Tensor

from aelightning.api import TrainedAutoencoder
from aelightning.checkpointing.atomic import write_json
from aelightning.cli.inputs import (
    ImageInput,
    check_batch_size,
    check_output_outside,
    decoded_batches,
    find_images,
    load_for_command,
)
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR
from aelightning.errors import ConfigError
from aelightning.evaluation.analysis import seeded
from aelightning.evaluation.metrics import per_image_mse, psnr
from aelightning.models.noise import Noise, NoNoise

log = logging.getLogger("aelightning")

#: files the command writes into ``output`` beside the reconstructions
GRID_NAME, ERRORS_NAME, SUMMARY_NAME = "grid.png", "errors.csv", "reconstruct.json"


def to_uint8(images: Tensor) -> np.ndarray:
    """Float images in [0, 1] (clamped) -> uint8 ``[N, H, W, C]`` for PNG files."""
    pixels = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def save_png(pixels: np.ndarray, path: Path) -> None:
    """One ``[H, W, C]`` uint8 image as PNG (grey for one channel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)


def output_names(relpaths: list[str]) -> dict[str, str]:
    """Each input's PNG name: the same relative path ending in ``.png``; where two inputs would
    share a name (``a.jpg`` and ``a.png``) or hit a file of this command, the old suffix stays
    (``a.jpg.png``)."""
    taken = {GRID_NAME, ERRORS_NAME, SUMMARY_NAME}
    names: dict[str, str] = {}
    for rel in relpaths:
        name = str(Path(rel).with_suffix(".png"))
        if name in taken:
            name = rel + ".png"
        taken.add(name)
        names[rel] = name
    return names


def choose_noise(cfg: DictConfig, model: TrainedAutoencoder) -> Noise:
    """``noise=<name>`` (a conf/noise entry), else the run's own with ``run_noise=true``."""
    chosen = cfg.get("noise")
    if cfg.get("run_noise") and chosen is not None:
        raise ConfigError("set either noise=<name> or run_noise=true, not both.")
    if cfg.get("run_noise"):
        if not model.module.noise.enabled:
            raise ConfigError(
                "run_noise=true but the run trained without corruption; pick one with "
                "noise=gaussian (or masking, salt_pepper)."
            )
        return model.module.noise
    return instantiate(chosen) if chosen is not None else NoNoise()


def save_grid(rows: list[Tensor], path: Path) -> None:
    """``rows``: tensors ``[N, C, H, W]`` of the same images (input, noisy, output), drawn as
    one row per image with a 2-pixel white gap."""
    from torchvision.utils import make_grid

    columns = torch.stack([r.float().clamp(0, 1).cpu() for r in rows], dim=1).flatten(0, 1)
    grid = make_grid(columns, nrow=len(rows), padding=2, pad_value=1.0)
    save_png(to_uint8(grid[None])[0], path)


def reconstruct_folder(cfg: DictConfig) -> dict[str, Any]:
    """Run the command; returns what ``reconstruct.json`` holds."""
    started = time.perf_counter()
    batch_size = check_batch_size(cfg.batch_size)
    grid_rows = int(cfg.get("grid_images") or 0)
    model = load_for_command(cfg)
    images = find_images(cfg.input)
    output = Path(str(cfg.output)).expanduser()
    check_output_outside(output, images)
    noise = choose_noise(cfg, model)
    names = output_names(images.relpaths)
    output.mkdir(parents=True, exist_ok=True)
    grid: list[list[Tensor]] = []
    done, rows = 0, []
    with seeded(int(cfg.seed), model.device):
        for relpaths, pixels in decoded_batches(
            model, images, batch_size, cfg.get("resize"), bool(cfg.to_grey)
        ):
            clean = model.as_input(pixels)
            noisy = noise(clean) if noise.enabled else clean
            out = model.reconstruct(noisy)
            mse, quality = per_image_mse(out, clean).cpu(), psnr(out, clean).cpu()
            noisy_quality = psnr(noisy, clean).cpu() if noise.enabled else None
            for i, (rel, png) in enumerate(zip(relpaths, to_uint8(out), strict=True)):
                save_png(png, output / names[rel])
                row = {"file": rel, "output": names[rel], "mse": float(mse[i])}
                row["psnr"] = float(quality[i])
                if noisy_quality is not None:
                    row["psnr_noisy"] = float(noisy_quality[i])
                rows.append(row)
            if done < grid_rows:
                keep = grid_rows - done
                parts = [clean, noisy, out] if noise.enabled else [clean, out]
                grid.append([p[:keep].cpu() for p in parts])
            done += len(relpaths)
    seconds = time.perf_counter() - started
    write_errors(rows, output / ERRORS_NAME)
    if grid:
        save_grid([torch.cat(column) for column in zip(*grid, strict=True)], output / GRID_NAME)
    summary = summarise(cfg, model, images, rows, noise, output, seconds)
    write_json(output / SUMMARY_NAME, summary)
    return summary


def write_errors(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    return sum(values) / len(values) if values else None


def summarise(
    cfg: DictConfig,
    model: TrainedAutoencoder,
    images: ImageInput,
    rows: list[dict[str, Any]],
    noise: Noise,
    output: Path,
    seconds: float,
) -> dict[str, Any]:
    return {
        "checkpoint": str(cfg.ckpt_path),
        "input": str(images.root),
        "output": str(output),
        "images": len(rows),
        "skipped": [{"file": f, "error": e} for f, e in images.skipped],
        "noise": repr(noise) if noise.enabled else None,
        "mean_mse": _mean(rows, "mse"),
        "mean_psnr": _mean(rows, "psnr"),
        "mean_psnr_noisy": _mean(rows, "psnr_noisy"),
        "seconds": seconds,
        "images_per_second": len(rows) / max(seconds, 1e-9),
        "model_input": list(model.input_shape),
    }


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    noisy = summary["mean_psnr_noisy"]
    console.print(
        f"[bold]ae-reconstruct[/bold] {summary['images']:,} images "
        f"({summary['model_input'][1]}x{summary['model_input'][2]}) in {summary['seconds']:.1f} s "
        f"({summary['images_per_second']:,.0f} images/s): mean MSE {summary['mean_mse']:.5g}, "
        f"PSNR {summary['mean_psnr']:.2f} dB"
        + (f" (noisy input {noisy:.2f} dB, {summary['noise']})" if noisy is not None else "")
    )
    if summary["skipped"]:
        skipped = ImageInput(Path(summary["input"]), [])
        skipped.skipped = [(s["file"], s["error"]) for s in summary["skipped"]]
        console.print(f"warning: {skipped.skipped_sentence()}")
    out = summary["output"]
    console.print(f"results: {out}/ (PNG per image), {out}/{GRID_NAME}, {out}/{ERRORS_NAME}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="reconstruct")
def main(cfg: DictConfig) -> None:
    print_summary(run_reporting_errors(lambda: reconstruct_folder(cfg)))


if __name__ == "__main__":
    main()

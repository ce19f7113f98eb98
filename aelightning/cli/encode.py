"""``ae-encode ckpt_path=... input=FILE_OR_FOLDER output=FOLDER``: the codes of a user's own
image files (``conf/encode.yaml``): ``codes.npy`` (float32 ``[N, D]``, each code flattened; a
VAE's posterior mean) and ``codes.csv`` (file name, then ``z0 .. z{D-1}``), rows in file order.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from rich.console import Console

from aelightning.checkpointing.atomic import write_json
from aelightning.cli.inputs import (
    check_batch_size,
    check_output_outside,
    decoded_batches,
    find_images,
    load_for_command,
)
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR

CODES_NPY, CODES_CSV, SUMMARY_NAME = "codes.npy", "codes.csv", "encode.json"


def encode_folder(cfg: DictConfig) -> dict[str, Any]:
    """Run the command; returns what ``encode.json`` holds."""
    started = time.perf_counter()
    batch_size = check_batch_size(cfg.batch_size)
    model = load_for_command(cfg)
    images = find_images(cfg.input)
    output = Path(str(cfg.output)).expanduser()
    check_output_outside(output, images)
    files: list[str] = []
    codes: list[torch.Tensor] = []
    for relpaths, pixels in decoded_batches(
        model, images, batch_size, cfg.get("resize"), bool(cfg.to_grey)
    ):
        codes.append(model.encode(pixels).flatten(1).cpu())
        files += relpaths
    matrix = torch.cat(codes).numpy().astype(np.float32)
    output.mkdir(parents=True, exist_ok=True)
    np.save(output / CODES_NPY, matrix)
    with open(output / CODES_CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", *(f"z{i}" for i in range(matrix.shape[1]))])
        for name, row in zip(files, matrix.tolist(), strict=True):
            writer.writerow([name, *(f"{v:.8g}" for v in row)])
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "input": str(images.root),
        "output": str(output),
        "images": len(files),
        "code_size": int(matrix.shape[1]),
        "code_shape": list(model.latent_shape),
        "skipped": [{"file": f, "error": e} for f, e in images.skipped],
        "seconds": time.perf_counter() - started,
    }
    write_json(output / SUMMARY_NAME, summary)
    summary["skipped_sentence"] = images.skipped_sentence()
    return summary


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"[bold]ae-encode[/bold] {summary['images']:,} images -> codes of size "
        f"{summary['code_size']} (shape {summary['code_shape']}) in {summary['seconds']:.1f} s"
    )
    if summary["skipped_sentence"]:
        console.print(f"warning: {summary['skipped_sentence']}")
    console.print(f"results: {summary['output']}/{CODES_NPY}, {summary['output']}/{CODES_CSV}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="encode")
def main(cfg: DictConfig) -> None:
    print_summary(run_reporting_errors(lambda: encode_folder(cfg)))


if __name__ == "__main__":
    main()

"""``ae-sample ckpt_path=... num_samples=64``: images decoded from the prior of a ``vae`` or
``aae`` checkpoint (``conf/sample.yaml``), as ``samples.png`` (a grid) and ``samples.npy``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig
from rich.console import Console

from aelightning.cli.inputs import load_for_command
from aelightning.cli.reconstruct import save_png, to_uint8
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR
from aelightning.errors import ConfigError


def sample_grid(cfg: DictConfig) -> dict[str, Any]:
    """Draw ``num_samples`` images (seeded) and write the grid and the array."""
    from torchvision.utils import make_grid

    n = cfg.num_samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_samples must be an integer >= 1, got {n!r}.")
    nrow = cfg.get("nrow") or math.ceil(math.sqrt(n))
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ConfigError(f"nrow must be null or an integer >= 1, got {nrow!r}.")
    model = load_for_command(cfg)
    samples = model.sample(n, seed=int(cfg.seed)).cpu()
    output = Path(str(cfg.output)).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    np.save(output / "samples.npy", samples.numpy())
    grid = make_grid(samples.clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    save_png(to_uint8(grid[None])[0], output / "samples.png")
    return {"samples": n, "objective": model.objective, "output": str(output)}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    result = run_reporting_errors(lambda: sample_grid(cfg))
    Console().print(
        f"[bold]ae-sample[/bold] {result['samples']} samples from the {result['objective']} "
        f"prior -> {result['output']}/samples.png, samples.npy"
    )


if __name__ == "__main__":
    main()

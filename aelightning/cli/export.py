"""``ae-export ckpt_path=... format=onnx|torchscript part=encoder|decoder|autoencoder``: write one
part of a trained model for use outside PyTorch, with a JSON beside it saying what to feed it
(``conf/export.yaml``; the work is :func:`aelightning.export.export_model`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from rich.console import Console

from aelightning.cli.inputs import load_for_command
from aelightning.cli.reporting import run_reporting_errors
from aelightning.config import CONFIG_DIR
from aelightning.errors import ConfigError
from aelightning.export import FORMATS, PARTS, export_model


def export(cfg: DictConfig) -> dict[str, Any]:
    """Run the command; returns the JSON written beside the file, plus its path."""
    fmt, part = str(cfg.format), str(cfg.part)
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown; use {' or '.join(FORMATS)}.")
    if part not in PARTS:
        raise ConfigError(f"part={part!r} is unknown; use {', '.join(PARTS)}.")
    default = Path(cfg.paths.output_dir) / f"{part}{FORMATS[fmt]}"
    path = Path(str(cfg.output)).expanduser() if cfg.get("output") else default
    if path.suffix.lower() == ".json":
        raise ConfigError(f"output={path} ends in .json, the name of the file written beside it.")
    model = load_for_command(cfg)
    info = export_model(model, part, fmt, path, check=bool(cfg.get("check", True)))
    return {**info, "path": str(path), "json": str(path.with_suffix(".json"))}


def print_result(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    shape = "x".join(str(s) for s in info["input"]["shape"])
    line = (
        f"[bold]ae-export[/bold] {info['part']} of the {info['objective']} ({info['net']}) as "
        f"{info['format']}: {info['path']} (input {shape})"
    )
    if "check" in info:
        line += f", max abs difference to PyTorch {info['check']['max_abs_diff']:.2g}"
    console.print(line)
    console.print(f"details: {info['json']}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    print_result(run_reporting_errors(lambda: export(cfg)))


if __name__ == "__main__":
    main()

"""The composed config at a glance: a Rich tree printed when a run starts, kept as a text file.

Each group shows the option chosen (``net (conv)``); a value that differs from what the chosen
options give by themselves (set on the command line, by an experiment or a debug config) is
highlighted with the group's default beside it. Written to ``<run dir>/config_tree.txt``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from aelightning.checkpointing.atomic import write_text_atomic

log = logging.getLogger("aelightning")

#: groups whose options change other groups' values: the tree highlights what they change
LAYERED_GROUPS = ("experiment", "debug", "hparams_search")
FILE_NAME = "config_tree.txt"
_MISSING = object()


def group_defaults(choices: Mapping[str, Any], config_name: str = "train") -> dict | None:
    """The config the chosen group options give alone (no value overrides, no experiment);
    None when it cannot be composed (the tree is then drawn without highlights)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from aelightning.config import CONFIG_DIR

    overrides = []
    for group, option in choices.items():
        if option is None or group.startswith("hydra") or group in LAYERED_GROUPS:
            continue
        value = f"[{','.join(option)}]" if isinstance(option, list) else option
        overrides.append(f"{group}={value}")
    try:
        if GlobalHydra.instance().is_initialized():
            cfg = compose(config_name, overrides=overrides)
        else:
            with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
                cfg = compose(config_name, overrides=overrides)
    except Exception as exc:  # a custom search path or config: draw the tree anyway
        log.debug("config tree without defaults: %s", exc)
        return None
    return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def config_tree(
    cfg: DictConfig, choices: Mapping[str, Any], defaults: Mapping[str, Any] | None
) -> Tree:
    """The tree of ``cfg`` (without ``hydra``); values differing from ``defaults`` in bold."""
    tree = Tree("[bold]config[/bold]", guide_style="dim")
    raw = OmegaConf.to_container(cfg, resolve=False)
    _add(tree, cfg, raw, defaults, choices, prefix="")  # type: ignore[arg-type]
    return tree


def _add(
    parent: Tree,
    cfg: DictConfig,
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any] | None,
    choices: Mapping[str, Any],
    prefix: str,
) -> None:
    for key, value in raw.items():
        if key == "hydra" and not prefix:
            continue
        path = f"{prefix}{key}"
        default = defaults.get(key, _MISSING) if isinstance(defaults, Mapping) else _MISSING
        if isinstance(value, Mapping):
            choice = choices.get(path.replace(".", "/"))
            label = f"[bold cyan]{escape(str(key))}[/bold cyan]"
            if choice is not None:
                label += f" [green]({escape(str(choice))})[/green]"
            branch = parent.add(label)
            nested = default if isinstance(default, Mapping) else None
            if defaults is not None and nested is None:
                nested = {}  # a whole new node: everything under it is highlighted
            _add(branch, cfg, value, nested, choices, f"{path}.")
            continue
        shown = _resolved(cfg, path, value)
        text = f"{escape(str(key))}: {escape(shown)}"
        if defaults is None or default == value:
            parent.add(text)
        elif default is _MISSING:
            parent.add(f"[bold yellow]{text}[/bold yellow] [yellow](added)[/yellow]")
        else:
            was = escape(_plain(default))
            parent.add(f"[bold yellow]{text}[/bold yellow] [yellow](default: {was})[/yellow]")


def _resolved(cfg: DictConfig, path: str, raw: Any) -> str:
    try:
        return _plain(OmegaConf.select(cfg, path, throw_on_resolution_failure=True))
    except Exception:  # an interpolation that only resolves inside the running app
        return _plain(raw)


def _plain(value: Any) -> str:
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=False)
    return "null" if value is None else str(value)


def print_config_tree(cfg: DictConfig, path: Path | None = None, console: Console | None = None):
    """Print the tree of ``cfg`` (choices and defaults from the running Hydra job) and save it
    as plain text to ``path``."""
    from hydra.core.hydra_config import HydraConfig

    choices: dict[str, Any] = {}
    config_name = "train"
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        choices = OmegaConf.to_container(hydra_cfg.runtime.choices) or {}  # type: ignore[assignment]
        config_name = hydra_cfg.job.config_name or config_name
    tree = config_tree(cfg, choices, group_defaults(choices, config_name))
    (console or Console()).print(tree)
    if path is not None:
        record = Console(file=io.StringIO(), width=120, no_color=True, record=True)
        record.print(tree)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(path), record.export_text())

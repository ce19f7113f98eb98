"""Compose the real ``conf/`` with tiny overrides so tests exercise the user's code path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from aelightning.config import CONFIG_DIR, compose_config

ROOT = Path(__file__).resolve().parents[1]


os.environ.setdefault("MPLBACKEND", "Agg")


def config_options(group: str) -> list[str]:
    """The options of a config group, ``conf/<group>/*.yaml``: tests parametrised over them
    cover a new objective, net or experiment without a list to edit."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


#: every objective (``model=``) and architecture (``net=``) the configs offer
OBJECTIVES = config_options("model")
NETS = config_options("net")
#: widths that keep a wide net (VGG) fast on a CPU, set where a net's config has the key
SMALL_WIDTHS = {"base_width": 4, "code_channels": 8}


def small_net_overrides(net: str) -> list[str]:
    """``net.<key>=<small>`` for the :data:`SMALL_WIDTHS` keys ``conf/net/<net>.yaml`` has."""
    keys = OmegaConf.load(Path(CONFIG_DIR) / "net" / f"{net}.yaml")
    return [f"net.{k}={v}" for k, v in SMALL_WIDTHS.items() if k in keys]


def build_net(net: str, input_shape: tuple[int, ...] = (1, 28, 28)):
    """``conf/net/<net>.yaml`` instantiated as ``build_model`` does, at small widths."""
    config = OmegaConf.load(Path(CONFIG_DIR) / "net" / f"{net}.yaml")
    config.merge_with(OmegaConf.from_dotlist([o[len("net.") :] for o in small_net_overrides(net)]))
    return instantiate(config, input_shape=list(input_shape), code_multiplier=1)


def bare_trainer(max_steps: int) -> L.Trainer:
    """A CPU trainer for ``max_steps`` with nothing else: no validation, logger, checkpoints,
    progress bar or summary (for tests of a module's own steps)."""
    return L.Trainer(
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


#: overrides that keep every composed run small and quiet
TINY = [
    "data.source=sample",
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    # seconds of plotting per run; tests/test_plots.py and test_evaluate.py switch them on
    "callbacks.figures=null",
    "callbacks.projector=null",
]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """``make_cfg("net.latent_dim=8", ...)`` -> a tiny train config writing into tmp_path."""

    def _make(*overrides: str, tiny: bool = True) -> DictConfig:
        data_dir = tmp_path / "data"
        data_dir.mkdir(exist_ok=True)
        base = [*TINY, f"data.data_dir={data_dir}"] if tiny else []
        keys = {o.split("=", 1)[0] for o in overrides}
        base = [o for o in base if o.split("=", 1)[0] not in keys]
        return compose_config(tmp_path / "run", [*base, *overrides])

    return _make

"""Turn a composed config into objects; shared by ``train`` and ``evaluate`` so a
checkpoint is always rebuilt exactly the way it was trained."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from aelightning.errors import ConfigError
from aelightning.models.base import AutoencoderModule


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    return instantiate(cfg.data, _recursive_=False)


def build_model(cfg: DictConfig, input_shape: Sequence[int]) -> AutoencoderModule:
    """Build net (sized for the objective's code) and noise, then the objective around them."""
    try:
        model_cls = get_class(cfg.model._target_)
    except Exception as exc:  # hydra raises ImportError/ValueError variants here
        raise ConfigError(
            f"model._target_={cfg.model._target_!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(model_cls, type) and issubclass(model_cls, AutoencoderModule)):
        raise ConfigError(f"model._target_={cfg.model._target_!r} is not an AutoencoderModule.")
    net = instantiate(
        cfg.net, input_shape=list(input_shape), code_multiplier=model_cls.code_multiplier
    )
    noise = instantiate(cfg.noise)
    return instantiate(cfg.model, net=net, noise=noise)


def build_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every entry of the ``callbacks`` group; ``null`` entries are switched off."""
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]


def build_loggers(cfg: DictConfig | None) -> list:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None and "_target_" in c]

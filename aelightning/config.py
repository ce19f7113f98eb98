"""Where the Hydra configs live: ``conf/`` beside the package (a source checkout or an
editable install), shared by every entry point, the benchmark and the tests; composing
them as the ``ae-*`` commands do (:func:`compose_config`); the resolvers they use
(registered when the package is imported); and :func:`validated`, which checks a config
block against its schema (a dataclass: an OmegaConf structured config) so that a
mistake is one sentence naming the key.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from aelightning.errors import ConfigError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# `trainer.benchmark: ${not:${.deterministic}}`: the cuDNN autotuner unless deterministic
if not OmegaConf.has_resolver("not"):
    OmegaConf.register_new_resolver("not", lambda value: not value)

T = TypeVar("T")


def setting(default: Any, use: str, check: Callable[[Any], bool] | None = None) -> Any:
    """A schema field: its default, what to tell a user who set it wrong, and a check of the
    value beyond its type (OmegaConf checks the type)."""
    return field(default=default, metadata={"use": use, "check": check})


def _field(schema: type, path: list[str]) -> tuple[Any, type, Any]:
    """The dataclass field at ``path`` (keys) of ``schema``, its type and its parent class;
    a missing last key gives field None."""
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        if f.name == path[0]:
            kind = hints[f.name]
            return _field(kind, path[1:]) if len(path) > 1 else (f, kind, schema)
    return None, type(None), schema


def _hint(f: Any, kind: type) -> str:
    """What a user may set a field of type ``kind`` to."""
    if f is not None and "use" in f.metadata:
        return f.metadata["use"]
    if isinstance(kind, type) and issubclass(kind, Enum):
        return "one of " + ", ".join(kind.__members__)
    return "true or false" if kind is bool else f"a {getattr(kind, '__name__', kind)}"


def _not_allowed(key: str, value: Any, hint: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not allowed; use {hint}.")


def validated(schema: type[T], values: Mapping[str, Any]) -> T:
    """``values`` checked against ``schema`` (a dataclass, OmegaConf's structured config) and
    returned as its instance; a wrong key, type or value is one ConfigError naming the key."""
    try:
        checked = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))
    except ConfigKeyError as exc:
        key = str(exc.full_key)
        _, _, parent = _field(schema, key.split("."))
        known = ", ".join(f.name for f in fields(parent))
        section = key.rpartition(".")[0] or "top-level"
        raise ConfigError(f"{key} is not a {section} setting; use one of {known}.") from None
    except ValidationError as exc:
        key = str(exc.full_key)
        f, kind, _ = _field(schema, key.split("."))
        raise _not_allowed(key, exc.value, _hint(f, kind)) from None
    _check_values(checked, "")
    return checked  # type: ignore[return-value]


def _check_values(obj: Any, prefix: str) -> None:
    """The value checks of ``obj``'s fields (:func:`setting`), nested dataclasses too."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            _check_values(value, f"{prefix}{f.name}.")
        elif f.metadata.get("check") and not f.metadata["check"](value):
            raise _not_allowed(f"{prefix}{f.name}", value, f.metadata["use"])


def compose_config(
    output_dir: Path | str, overrides: list[str], config_name: str = "train"
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides`` as ``ae-train`` would, writing
    into ``output_dir`` (Hydra's run dir is set there, so ``HydraConfig`` works)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(output_dir)
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg

"""Turn a composed config into objects; shared by ``train`` and ``evaluate`` so a
checkpoint is always rebuilt exactly the way it was trained.

Before anything is built, every ``_target_`` entry is checked against its target's signature
(:func:`check_target_arguments`): a key the target does not take, or a value of the wrong type
for a typed argument, is one sentence naming the full key instead of a ``TypeError`` raised deep
inside training (a partial's arguments are only used when it is called, e.g. a scheduler's).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any

import lightning as L
from hydra.utils import get_class, get_object, instantiate
from omegaconf import DictConfig, ListConfig

from aelightning.errors import ConfigError
from aelightning.models.base import AutoencoderModule


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    check_target_arguments(cfg.data, "data")
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
    for group in ("net", "noise", "model"):
        check_target_arguments(cfg[group], group)
    net = instantiate(
        cfg.net, input_shape=list(input_shape), code_multiplier=model_cls.code_multiplier
    )
    noise = instantiate(cfg.noise)
    return instantiate(cfg.model, net=net, noise=noise)


def build_callbacks(cfg: DictConfig | None) -> list[L.Callback]:
    """Instantiate every entry of the ``callbacks`` group; ``null`` entries are switched off."""
    return _build_entries(cfg, "callbacks")


def build_loggers(cfg: DictConfig | None) -> list:
    return _build_entries(cfg, "logger")


def build_trainer(cfg: DictConfig, **kwargs: Any) -> L.Trainer:
    """The ``trainer`` group's Trainer, its keys and value types checked first; ``kwargs``
    (callbacks, loggers, plugins) are passed as built objects."""
    check_target_arguments(cfg, "trainer")
    return instantiate(cfg, **kwargs)


def _build_entries(cfg: DictConfig | None, group: str) -> list:
    entries = {k: c for k, c in (cfg or {}).items() if c is not None and "_target_" in c}
    for name, entry in entries.items():
        check_target_arguments(entry, f"{group}.{name}")
    return [instantiate(c) for c in entries.values()]


# ------------------------------------------------------------------ config vs. signature
def check_target_arguments(node: Any, key: str) -> None:
    """Raise :class:`ConfigError` for a key of a ``_target_`` entry (at any depth under
    ``node``) that its target does not take, or a scalar of a type its annotation excludes.

    Targets that cannot be imported are left to ``instantiate`` (whose error names them), and
    targets taking ``**kwargs`` accept any key.
    """
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_target_arguments(item, f"{key}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        _check_one_target(node, key)
    for name in node:
        if not str(name).startswith("_"):
            child = node._get_node(name)
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_none():
                check_target_arguments(child, f"{key}.{name}")


def _check_one_target(node: DictConfig, key: str) -> None:
    target = node._get_node("_target_")._value()
    try:
        obj = get_object(str(target))
        signature = inspect.signature(obj)
    except Exception:  # not importable / no signature: instantiate reports it
        return
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    hints = _type_hints(obj)
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for name in node:
        name = str(name)
        if name.startswith("_"):
            continue
        if name not in params:
            if takes_any:
                continue
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = (
                f"did you mean {key}.{close[0]}?"
                if close
                else f"it takes {', '.join(accepted) or 'no arguments'}"
            )
            raise ConfigError(
                f"{key}.{name} is not an argument of {target} ({hint}); remove it with "
                f"'~{key}.{name}' or fix its name."
            )
        annotation = hints.get(name)
        if annotation is None:
            continue
        try:
            value = node[name]
        except Exception:  # an interpolation that cannot resolve here: leave it to the target
            continue
        if isinstance(value, (DictConfig, ListConfig)) or value is None:
            continue
        if _accepts(annotation, value) is False:
            raise ConfigError(
                f"{key}.{name}={value!r} is not valid: {target} takes {name} as "
                f"{_describe(annotation)}."
            )


def _type_hints(obj: Any) -> dict[str, Any]:
    """The resolved annotations of ``obj``'s parameters ({} where they cannot be resolved)."""
    function = obj.__init__ if isinstance(obj, type) else obj
    try:
        return typing.get_type_hints(function)
    except Exception:
        return {}


_UNIONS = (typing.Union, types.UnionType)


def _accepts(annotation: Any, value: Any) -> bool | None:
    """Whether a scalar config value fits ``annotation``; None when that cannot be told
    (a class, a protocol, ``Any``), so only clear mismatches are refused."""
    origin = typing.get_origin(annotation)
    if origin in _UNIONS:
        answers = [_accepts(arg, value) for arg in typing.get_args(annotation)]
        if True in answers:
            return True
        return None if None in answers else False
    if origin is typing.Literal:
        return any(
            value == choice and isinstance(value, bool) == isinstance(choice, bool)
            for choice in typing.get_args(annotation)
        )
    if annotation is type(None):
        return False
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, dict, set) or annotation in (list, tuple, dict, set):
        return False  # a scalar where a collection is wanted
    return None


def _describe(annotation: Any) -> str:
    """``int | None`` -> "int or null"; Literal choices (also spread over a union) as one list."""
    choices: list[Any] = []
    kinds: list[str] = []
    for arg in _flatten(annotation):
        if typing.get_origin(arg) is typing.Literal:
            choices += [c for c in typing.get_args(arg) if str(c) not in map(str, choices)]
        elif arg is type(None):
            kinds.append("null")
        elif isinstance(arg, type) and typing.get_origin(arg) is None:
            kinds.append(arg.__name__)
        else:
            kinds.append(str(arg).replace("typing.", ""))
    if choices:
        kinds.insert(0, "one of " + ", ".join(str(c) for c in choices))
    return " or ".join(dict.fromkeys(kinds))


def _flatten(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in _UNIONS:
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    return [annotation]

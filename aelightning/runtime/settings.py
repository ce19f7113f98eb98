"""Speed settings from the config's ``runtime`` block and ``compile`` key.

Two levels, both applied by :func:`configure_runtime` right before fitting:

- process-wide: CPU intra-op threads, denormal flushing, float32 matmul precision (TF32 on
  Ampere+ GPUs);
- per model, in place: ``channels_last`` for conv nets on a GPU, and ``torch.compile`` of the
  net's encoder and decoder through ``nn.Module.compile()``, which keeps every ``state_dict``
  key (no ``_orig_mod.`` prefix), so checkpoints load either way.

None of them changes what is computed, only how fast (TF32 rounds differently in the last
bits); nor does ``steps_per_call`` (several optimiser steps per Lightning step,
:mod:`aelightning.runtime.fused_steps`), applied to the module and trainer here. Two speed
switches live where their library reads them: the cuDNN autotuner is Lightning's
``trainer.benchmark``, the fused optimiser step torch's ``model.optimizer.fused``.

:class:`RuntimeConfig` is the block's schema (an OmegaConf structured config): a wrong key or
type is one sentence naming it, before any work starts.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from aelightning.config import setting, validated
from aelightning.errors import ConfigError
from aelightning.runtime.cpus import auto_cpu_threads, parallel_jobs
from aelightning.runtime.fused_steps import fused_steps_for
from aelightning.runtime.lightning_compat import fused_optimizer_devices

log = logging.getLogger("aelightning")


class MatmulPrecision(str, Enum):
    """``torch.set_float32_matmul_precision``'s levels."""

    highest = "highest"
    high = "high"
    medium = "medium"


#: ``torch.compile``'s modes (the names are not Python identifiers, hence the functional API)
CompileMode = Enum(  # type: ignore[misc]
    "CompileMode",
    {m: m for m in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")},
    type=str,
)

#: keys the runtime block used to have, and where the setting lives now
MOVED = {
    "cudnn_benchmark": "trainer.benchmark (Lightning's cuDNN autotuner switch)",
    "fused_optimizer": "model.optimizer.fused (torch's fused optimiser step)",
}


@dataclass
class RuntimeConfig:
    """Schema of the ``runtime`` block (documented in ``conf/train.yaml``)."""

    cpu_threads: Union[int, str] = setting(  # noqa: UP007 (OmegaConf reads typing.Union)
        "auto", "auto or an integer >= 1", lambda v: v == "auto" or (type(v) is int and v >= 1)
    )
    flush_denormal: bool = True
    float32_matmul_precision: MatmulPrecision = MatmulPrecision.high
    channels_last: Union[bool, str] = setting(  # noqa: UP007
        "auto", "auto, true or false", lambda v: v in ("auto", True, False)
    )
    lean_hooks: bool = True
    compile_mode: CompileMode = CompileMode["default"]  # type: ignore[valid-type]
    compile_backend: str = setting("inductor", "a torch.compile backend, e.g. inductor", bool)
    steps_per_call: Union[int, str] = setting(  # noqa: UP007
        "auto",
        "auto or an integer >= 1 (optimiser steps per Lightning step)",
        lambda v: v == "auto" or (type(v) is int and v >= 1),
    )


@dataclass
class SpeedConfig:
    """The keys this module reads: the ``runtime`` block and the top-level ``compile``."""

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    compile: bool = False


def _auto(value: Any) -> Any:
    return None if value == "auto" else value


@dataclass(frozen=True)
class RuntimeSettings:
    """The validated ``runtime`` block and ``compile`` key; None means ``auto``."""

    cpu_threads: int | None = None
    flush_denormal: bool = True
    float32_matmul_precision: str = "high"
    channels_last: bool | None = None
    lean_hooks: bool = True
    compile: bool = False
    compile_mode: str = "default"
    compile_backend: str = "inductor"
    steps_per_call: int | None = None

    @classmethod
    def from_config(
        cls, runtime: Mapping[str, Any] | None, compile: Any = False
    ) -> RuntimeSettings:
        """Check ``runtime.*`` and the top-level ``compile`` against :class:`SpeedConfig`."""
        if isinstance(runtime, DictConfig):
            runtime = OmegaConf.to_container(runtime, resolve=True)  # type: ignore[assignment]
        block = dict(runtime or {})
        for key, where in MOVED.items():
            if key in block:
                raise ConfigError(f"runtime.{key} is no longer a runtime setting; set {where}.")
        speed = validated(SpeedConfig, {"runtime": block, "compile": compile})
        checked = speed.runtime
        return cls(
            cpu_threads=_auto(checked.cpu_threads),
            flush_denormal=checked.flush_denormal,
            float32_matmul_precision=checked.float32_matmul_precision.value,
            channels_last=_auto(checked.channels_last),
            lean_hooks=checked.lean_hooks,
            compile=speed.compile,
            compile_mode=checked.compile_mode.value,
            compile_backend=checked.compile_backend,
            steps_per_call=_auto(checked.steps_per_call),
        )


# ------------------------------------------------------------------------- process level
def skip_nvml_check() -> bool:
    """On a machine without GPUs, undo Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1``.

    Lightning sets it when imported, so that asking whether CUDA is available cannot poison a
    later ``fork``. With it, ``torch.cuda.is_available()`` loads NVML on every call while no
    GPU has been initialised, and Adam/AdamW ask on every step: 0.2 ms per step on a CPU-only
    machine (measured), a tenth of a small model's step. Without any GPU there is nothing a
    fork could inherit, so the plain check is safe; with a GPU present nothing changes.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or torch.cuda.device_count() > 0:
        return False
    del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    return True


def flush_denormals(enabled: bool) -> bool:
    """Set (or clear) flush-to-zero for denormal floats on this thread; True if in effect.

    The CPU flag is per thread, and OpenMP's worker threads copy it only when they are
    created, at torch's first parallel operation: set later, it reaches the main thread alone
    and the workers keep the slow path (with 2 threads, half of every parallel op). So
    :func:`configure_early` calls this before a run touches any data.
    """
    return bool(torch.set_flush_denormal(enabled)) and enabled


def configure_early(settings: RuntimeSettings) -> None:
    """The process settings that must precede any tensor work (see :func:`flush_denormals`)."""
    flush_denormals(settings.flush_denormal)


def configure_process(settings: RuntimeSettings, device_type: str, jobs: int = 1) -> dict[str, Any]:
    """Apply the process-wide settings; returns what was set (for the run log).

    ``jobs`` is how many processes like this one run at once (see :func:`parallel_jobs`).
    """
    applied: dict[str, Any] = {}
    if device_type == "cpu":
        if skip_nvml_check():
            applied["nvml_cuda_check"] = "off (no GPU)"
        if settings.cpu_threads is None:
            threads, why = auto_cpu_threads(jobs)
            applied["cpu_threads"] = f"{threads} (auto: {why})"
        else:
            threads = settings.cpu_threads
            applied["cpu_threads"] = threads
        torch.set_num_threads(threads)
        # Denormal floats (below 1.2e-38) take a slow path in x86 floating-point units, and
        # training makes them: e.g. Adam's moments of weights whose gradient stays zero (MNIST's
        # blank border pixels) shrink by 0.9 per step and are denormal after ~800 steps. The
        # seeds' MLP then trains at half speed (batch 32: 6,000 vs 13,000 samples/s, measured).
        applied["flush_denormal"] = flush_denormals(settings.flush_denormal)
    torch.set_float32_matmul_precision(settings.float32_matmul_precision)
    applied["float32_matmul_precision"] = settings.float32_matmul_precision
    return applied


# --------------------------------------------------------------------------- model level
def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def optimizer_factories(module: nn.Module) -> dict[str, Any]:
    """The module's optimiser factories by config key (``optimizer_factory`` ->
    ``model.optimizer``, ``d_optimizer_factory`` -> ``model.d_optimizer``)."""
    return {
        f"model.{name.removesuffix('_factory')}": name
        for name in vars(module)
        if name.endswith("optimizer_factory")
    }


@functools.cache
def _say_unfused(key: str, device_type: str) -> None:
    log.warning(
        "%s.fused=true: torch has no fused optimiser step for parameters on %s; using the "
        "unfused one (the same maths).",
        key,
        device_type,
    )


def fused_where_supported(module: nn.Module, device_type: str) -> dict[str, Any]:
    """Optimisers configured with ``fused: true`` keep it where torch has the fused step
    (``conf/model/optimizer/*.yaml`` asks for it) and get ``fused=False`` on any other
    device, with a warning, instead of failing at their first step; ``fused`` together with
    ``foreach`` is a ConfigError."""
    applied: dict[str, Any] = {}
    for key, name in optimizer_factories(module).items():
        factory = getattr(module, name)
        keywords = getattr(factory, "keywords", {})
        if not keywords.get("fused"):
            continue
        if keywords.get("foreach"):
            raise ConfigError(
                f"{key}: fused=true and foreach=true exclude each other; set {key}.fused=false "
                "to use foreach."
            )
        if device_type not in fused_optimizer_devices():
            _say_unfused(key, device_type)
            setattr(module, name, functools.partial(factory, fused=False))
            applied[f"{key}.fused"] = f"false (not on {device_type})"
    return applied


def configure_model(
    module: nn.Module, settings: RuntimeSettings, device_type: str
) -> dict[str, Any]:
    """Apply the per-model settings to ``module`` (a LightningModule with ``.net``) in place."""
    applied = fused_where_supported(module, device_type)
    net = getattr(module, "net", module)
    channels_last = settings.channels_last
    if channels_last is None:
        channels_last = device_type == "cuda" and has_conv(net)
    if channels_last:
        net.to(memory_format=torch.channels_last)
        applied["channels_last"] = True
    if settings.compile:
        compile_in_place(net, settings.compile_mode, settings.compile_backend)
        applied["compile"] = f"{settings.compile_backend}/{settings.compile_mode}"
    return applied


def compile_in_place(net: nn.Module, mode: str = "default", backend: str = "inductor") -> None:
    """``torch.compile`` each child of ``net`` (its encoder and decoder) in place.

    Objectives call ``net.encoder(...)``/``net.decoder(...)`` (through ``encode``/``decode``),
    not ``net(...)``, so the children are what runs; ``nn.Module.compile`` leaves parameter
    names, and so checkpoints, unchanged.
    """
    options: dict[str, Any] = {"backend": backend}
    if mode != "default":
        options["mode"] = mode
    children = list(net.children()) or [net]
    for child in children:
        child.compile(**options)


def configure_runtime(cfg: Mapping[str, Any], module: nn.Module, trainer: Any) -> dict[str, Any]:
    """The one call ``train`` makes: validate the config and apply both levels."""
    settings = RuntimeSettings.from_config(cfg.get("runtime"), cfg.get("compile", False))
    device_type = trainer.strategy.root_device.type
    applied = configure_process(settings, device_type, jobs=parallel_jobs())
    applied.update(configure_model(module, settings, device_type))
    fused = fused_steps_for(module, trainer, settings.steps_per_call)
    if fused is not None:
        module.fused_steps = fused
        applied["steps_per_call"] = settings.steps_per_call or "auto"
    log.info("Runtime: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied

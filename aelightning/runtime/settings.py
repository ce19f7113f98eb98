"""Speed settings from the config's ``runtime`` block and ``compile`` key.

Two levels, both applied by :func:`configure_runtime` right before fitting:

- process-wide: CPU intra-op threads, float32 matmul precision (TF32 on Ampere+ GPUs), the
  cuDNN autotuner;
- per model, in place: fused optimiser kernels, ``channels_last`` for conv nets on a GPU, and
  ``torch.compile`` of the net's encoder and decoder through ``nn.Module.compile()``, which
  keeps every ``state_dict`` key (no ``_orig_mod.`` prefix), so checkpoints load either way.

None of them changes what is computed, only how fast (TF32 and fused kernels round
differently in the last bits).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from aelightning.errors import ConfigError
from aelightning.runtime.cpus import auto_cpu_threads, parallel_jobs

log = logging.getLogger("aelightning")

MATMUL_PRECISIONS = ("highest", "high", "medium")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: cgroup v2 / v1 files that cap how much CPU time this process may use


def _auto_bool(value: Any, key: str) -> bool | None:
    """``auto`` -> None, true/false -> bool; anything else is a ConfigError naming ``key``."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}={value!r} is not allowed; use auto, true or false.")


@dataclass(frozen=True)
class RuntimeSettings:
    """The validated ``runtime`` block (see ``conf/train.yaml``); None means ``auto``."""

    cpu_threads: int | None = None
    flush_denormal: bool = True
    float32_matmul_precision: str = "high"
    cudnn_benchmark: bool | None = None
    channels_last: bool | None = None
    fused_optimizer: bool = True
    lean_hooks: bool = True
    compile: bool = False
    compile_mode: str = "default"
    compile_backend: str = "inductor"

    @classmethod
    def from_config(
        cls, runtime: Mapping[str, Any] | None, compile: Any = False
    ) -> RuntimeSettings:
        """Validate ``runtime.*`` and the top-level ``compile`` key; unknown keys are errors."""
        block = dict(runtime or {})
        known = {f for f in cls.__dataclass_fields__ if f != "compile"}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ConfigError(
                f"runtime.{unknown[0]} is not a runtime setting; use one of "
                f"{', '.join(sorted(known))}."
            )
        threads = block.get("cpu_threads", "auto")
        if threads in (None, "auto"):
            threads = None
        elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"runtime.cpu_threads={threads!r} must be auto or an integer >= 1.")
        precision = block.get("float32_matmul_precision", "high")
        if precision not in MATMUL_PRECISIONS:
            raise ConfigError(
                f"runtime.float32_matmul_precision={precision!r} is not allowed; use one of "
                f"{', '.join(MATMUL_PRECISIONS)}."
            )
        fused = block.get("fused_optimizer", True)
        if not isinstance(fused, bool):
            raise ConfigError(f"runtime.fused_optimizer={fused!r} must be true or false.")
        lean = block.get("lean_hooks", True)
        if not isinstance(lean, bool):
            raise ConfigError(f"runtime.lean_hooks={lean!r} must be true or false.")
        flush = block.get("flush_denormal", True)
        if not isinstance(flush, bool):
            raise ConfigError(f"runtime.flush_denormal={flush!r} must be true or false.")
        if not isinstance(compile, bool):
            raise ConfigError(f"compile={compile!r} must be true or false.")
        mode = block.get("compile_mode", "default")
        if mode not in COMPILE_MODES:
            raise ConfigError(
                f"runtime.compile_mode={mode!r} is not allowed; use one of "
                f"{', '.join(COMPILE_MODES)}."
            )
        backend = block.get("compile_backend", "inductor")
        if not isinstance(backend, str) or not backend:
            raise ConfigError(
                f"runtime.compile_backend={backend!r} must name a torch.compile backend, "
                "e.g. inductor."
            )
        return cls(
            cpu_threads=threads,
            flush_denormal=flush,
            float32_matmul_precision=precision,
            cudnn_benchmark=_auto_bool(block.get("cudnn_benchmark"), "runtime.cudnn_benchmark"),
            channels_last=_auto_bool(block.get("channels_last"), "runtime.channels_last"),
            fused_optimizer=fused,
            lean_hooks=lean,
            compile=compile,
            compile_mode=mode,
            compile_backend=backend,
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


def configure_process(
    settings: RuntimeSettings,
    device_type: str,
    deterministic: bool = False,
    trainer_benchmark: bool | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
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
    if device_type == "cuda":
        benchmark = settings.cudnn_benchmark
        if benchmark is None:  # auto: trainer.benchmark wins, then trainer.deterministic
            benchmark = trainer_benchmark if trainer_benchmark is not None else not deterministic
        torch.backends.cudnn.benchmark = bool(benchmark)
        applied["cudnn_benchmark"] = bool(benchmark)
    return applied


# --------------------------------------------------------------------------- model level
def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


#: optimisers whose fused step torch 2.4+ has on both CPU and CUDA (Adagrad's is CPU-only)
FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
FUSED_DEVICES = ("cpu", "cuda")


def _tensors(params: list[Any]) -> Iterable[torch.Tensor]:
    for p in params:
        yield from p["params"] if isinstance(p, dict) else [p]


class PreferFused:
    """An optimiser factory that asks for the fused (one kernel per step) implementation.

    torch checks the parameters only at the first step, so this checks first: floating-point
    parameters on a CPU or CUDA device get ``fused=True``, anything else the factory as
    configured. Same maths; rounding may differ in the last bits.
    """

    def __init__(self, factory: Callable[..., Optimizer]):
        self.factory = factory
        self.keywords = dict(getattr(factory, "keywords", {}))  # like functools.partial

    def __call__(self, params: Any, **kwargs: Any) -> Optimizer:
        params = list(params)
        fusable = all(
            t.is_floating_point() and t.device.type in FUSED_DEVICES for t in _tensors(params)
        )
        if fusable:
            return self.factory(params, fused=True, **kwargs)
        return self.factory(params, **kwargs)

    def __repr__(self) -> str:
        return f"PreferFused({self.factory!r})"


def wants_fused(factory: Any) -> bool:
    """True for a factory of Adam, AdamW or SGD (or a subclass taking ``fused``) that was not
    told ``fused`` or ``foreach`` by the user."""
    if isinstance(factory, PreferFused) or not isinstance(factory, functools.partial):
        return False
    cls = factory.func
    if not (isinstance(cls, type) and issubclass(cls, FUSED_OPTIMIZERS)):
        return False
    chosen = {k for k in ("fused", "foreach") if factory.keywords.get(k) is not None}
    return not chosen and "fused" in inspect.signature(cls).parameters


def configure_model(
    module: nn.Module, settings: RuntimeSettings, device_type: str
) -> dict[str, Any]:
    """Apply the per-model settings to ``module`` (a LightningModule with ``.net``) in place."""
    applied: dict[str, Any] = {}
    if settings.fused_optimizer:
        names = [n for n in vars(module) if n.endswith("optimizer_factory")]
        fused = [n for n in names if wants_fused(getattr(module, n))]
        for name in fused:
            setattr(module, name, PreferFused(getattr(module, name)))
        if fused:
            applied["fused_optimizer"] = True
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
    trainer_cfg = cfg.get("trainer") or {}
    applied = configure_process(
        settings,
        device_type,
        deterministic=bool(trainer_cfg.get("deterministic")),
        trainer_benchmark=trainer_cfg.get("benchmark"),
        jobs=parallel_jobs(),
    )
    applied.update(configure_model(module, settings, device_type))
    log.info("Runtime: %s", ", ".join(f"{k}={v}" for k, v in applied.items()))
    return applied

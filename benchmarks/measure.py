"""Clocks and memory gauges shared by the three ways, and one timed run's record."""

from __future__ import annotations

import cProfile
import gc
import pstats
import resource
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Laps:
    """Split wall time into named parts (profile runs only; a disabled one costs a call)."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device, self.enabled = device, enabled
        self.totals: dict[str, float] = defaultdict(float)
        self._t = 0.0

    def start(self) -> None:
        if self.enabled:
            sync(self.device)
            self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            sync(self.device)
            t = time.perf_counter()
            self.totals[name] += t - self._t
            self._t = t


class CallCounter:
    """Counts function calls (Python and builtins, e.g. each torch op) with cProfile.

    A count does not depend on how busy the machine is, unlike a time: on a shared machine
    the calls per step are the steady measure of how much a loop does besides the maths.
    """

    def __init__(self) -> None:
        self.calls = 0
        self._profile = cProfile.Profile()

    def __enter__(self) -> CallCounter:
        self._profile.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self._profile.disable()
        self.calls = pstats.Stats(self._profile).total_calls


class PeakMemory:
    """Peak resident memory (and GPU memory) of the process while the block runs.

    Linux lets a process reset its high-water mark (``/proc/self/clear_refs``, value 5), so
    each run gets its own peak in one process; elsewhere the process-wide peak so far is used.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_mb = 0.0
        self.start_mb = 0.0
        self.gpu_mb: float | None = None
        self.exact = False

    def __enter__(self) -> PeakMemory:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:
            self.exact = False
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start_mb = rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss_mb = _peakrss_mb()
        if self.device.type == "cuda":
            self.gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20


def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _peakrss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # macOS reports bytes, Linux kilobytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return kb / 1024


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb or 0) / 1024


@dataclass
class Run:
    """One timed run of one method: per-epoch samples and seconds, setup time, memory."""

    method: str
    epochs: list[dict[str, Any]]
    setup_s: float = 0.0
    peak_rss_mb: float = 0.0
    rss_start_mb: float = 0.0
    gpu_peak_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measured(
        cls,
        method: str,
        epochs: list[dict[str, Any]],
        setup_s: float,
        memory: PeakMemory,
        **extra: Any,
    ) -> Run:
        return cls(
            method, epochs, setup_s, memory.rss_mb, memory.start_mb, memory.gpu_mb, dict(extra)
        )

    def timed(self) -> list[dict[str, Any]]:
        """The epochs after the warm-up one (all of them when there is only one); an epoch
        run under the call counter is not timed."""
        epochs = [e for e in self.epochs if "calls" not in e]
        return epochs[1:] if len(epochs) > 1 else epochs

    def calls_per_step(self) -> float | None:
        counted = [e for e in self.epochs if "calls" in e]
        steps = sum(e["steps"] for e in counted)
        return sum(e["calls"] for e in counted) / steps if steps else None

    @property
    def samples_per_s(self) -> float:
        """Samples per wall-clock second over the timed epochs: what the tables report."""
        return self._rate("seconds")

    @property
    def samples_per_cpu_s(self) -> float:
        """Samples per CPU second of the whole process (all its threads). On a machine shared
        with other work, wall time counts their turns too; CPU time counts only ours."""
        return self._rate("cpu_seconds")

    def _rate(self, key: str) -> float:
        epochs = self.timed()
        seconds = sum(e[key] for e in epochs)
        return sum(e["samples"] for e in epochs) / seconds if seconds > 0 else 0.0

    def ms_per_step(self) -> dict[str, float]:
        """Mean milliseconds per step of each profiled part, plus ``total``."""
        epochs = self.timed()
        steps = sum(e["steps"] for e in epochs)
        parts: dict[str, float] = defaultdict(float)
        for e in epochs:
            for k, v in e.get("parts", {}).items():
                parts[k] += v
        total = sum(e["seconds"] for e in epochs)
        out = {k: 1e3 * v / steps for k, v in parts.items()}
        out["other"] = max(0.0, 1e3 * total / steps - sum(out.values()))
        out["total"] = 1e3 * total / steps
        return out

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["samples_per_s"] = self.samples_per_s
        d["samples_per_cpu_s"] = self.samples_per_cpu_s
        return d

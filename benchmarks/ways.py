"""The three ways to train one case: (a) the framework, (b) the seeds' loop, (c) the limit."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from benchmarks.cases import Case
from benchmarks.data import BenchData
from benchmarks.measure import CallCounter, Laps, PeakMemory, Run, sync


def run_framework(
    cfg: DictConfig,
    run_dir: Path,
    device: torch.device,
    profile: bool = False,
    count_calls: bool = False,
) -> Run:
    """One ``train(cfg)`` (fit only; ``cfg`` writes into ``run_dir``) with the epoch clock
    added as a callback."""
    from aelightning.cli.train import train

    clock_file = run_dir / "clock.json"
    with open_dict(cfg):
        cfg.callbacks.bench_clock = {
            "_target_": "benchmarks.clock.EpochClock",
            "out": str(clock_file),
            "profile": profile,
            "count_calls": count_calls,
        }
        if count_calls:  # one more epoch, counted and not timed
            cfg.trainer.max_epochs = int(cfg.trainer.max_epochs) + 1
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
    setup = total - sum(e["seconds"] for e in epochs)
    run = Run.measured(
        "framework", epochs, setup, memory, fit_s=total, cpu_threads=clock["cpu_threads"]
    )
    timed = run.timed()  # after runtime.steps_per_call=auto has measured its K
    steps = sum(e["steps"] for e in timed)
    calls = sum(e.get("lightning_steps", e["steps"]) for e in timed)
    run.extra["lightning_calls_per_step"] = calls / steps if steps else None
    return run


Objective = Callable[[Tensor], Tensor]


def objective_for(module: Any) -> Objective:
    """The loss of a batch as a plain loop computes it: the seeds' ``nn.MSELoss()(net(x), x)``
    for a plain autoencoder, else the module's own objective (a VAE's negative ELBO, noise,
    sparsity) through its ``model_step``, outside Lightning."""
    from aelightning.models.ae import Autoencoder

    if type(module) is Autoencoder and not module.noise.enabled:
        net, loss_fn = module.net, nn.MSELoss()
        return lambda x: loss_fn(net(x).float(), x.float())
    # a loss that logs (the VAE's KL weight) has no trainer to log to here: nothing to say
    warnings.filterwarnings("ignore", message=r"You are trying to `self.log\(\)`")
    return lambda x: module.model_step((x,)).loss


def train_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[], Iterable[Tensor]],
    epochs: int,
    device: torch.device,
    profile: bool,
    autocast_dtype: torch.dtype | None = None,
    count_calls: bool = False,
    *,
    objective: Objective,
) -> list[dict[str, Any]]:
    """The plain PyTorch loop shared by (b) and (c): forward + loss, zero_grad, backward, step.

    Like the seeds it prints nothing per step and reads the loss once per epoch (one sync).
    ``objective`` is the loss of a batch (:func:`objective_for`); ``autocast_dtype`` mirrors
    the framework's mixed precision in (c); the loss is float32. ``profile`` splits each step
    into parts; ``count_calls`` adds an (untimed) epoch that counts function calls.
    """
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None

    def one_epoch(laps: Laps) -> dict[str, Any]:
        sync(device)
        t0, cpu0 = time.perf_counter(), time.process_time()
        samples = steps = 0
        loss = torch.zeros(())
        laps.start()
        for x in batches():
            laps.lap("data")
            with _autocast(device, autocast_dtype):
                loss = objective(x)
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
        sync(device)
        return {
            "samples": samples,
            "steps": steps,
            "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - cpu0,
            "parts": dict(laps.totals),
        }

    model.train()
    out = [one_epoch(Laps(device, profile)) for _ in range(epochs)]
    if count_calls:
        with CallCounter() as counter:
            epoch = one_epoch(Laps(device, False))
        out.append({**epoch, "calls": counter.calls})
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


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
    module: Any,
    data: BenchData,
    case: Case,
    epochs: int,
    device: torch.device,
    profile: bool = False,
    count_calls: bool = False,
) -> Run:
    """(b): the seeds' loop over torchvision's dataset class, as the seed documents write it
    (the module's net and, for other objectives than the plain AE's, its loss)."""
    from torch.utils.data import DataLoader

    with PeakMemory(device) as memory:
        t = time.perf_counter()
        loader = DataLoader(seeds_dataset(data, case), batch_size=case.batch_size, shuffle=True)
        model = module.to(device).net
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        setup = time.perf_counter() - t

        def batches() -> Iterator[Tensor]:
            for x, _ in loader:
                yield x.to(device)

        epochs_out = train_epochs(
            model,
            optimizer,
            batches,
            epochs,
            device,
            profile,
            None,
            count_calls,
            objective=objective_for(module),
        )
    return Run.measured("seeds", epochs_out, setup, memory)


def run_limit(
    module: Any,
    images: Tensor,
    batch_size: int,
    epochs: int,
    device: torch.device,
    profile: bool,
    autocast_dtype: torch.dtype | None,
    count_calls: bool = False,
) -> Run:
    """(c): one float tensor on the device, gathered by a per-epoch permutation; the module's
    net, objective (:func:`objective_for`) and optimiser factory after the same runtime
    settings as (a)."""
    with PeakMemory(device) as memory:
        t = time.perf_counter()
        x_all = images.to(device).float().div_(255.0)
        model = module.to(device).net
        optimizer = module.optimizer_factory(model.parameters())
        n = len(x_all)
        setup = time.perf_counter() - t

        def batches() -> Iterator[Tensor]:
            perm = torch.randperm(n, device=device)
            for i in range(0, n, batch_size):
                # a row gather (index_select), as the framework's loader does: the fastest
                yield x_all.index_select(0, perm[i : i + batch_size])

        epochs_out = train_epochs(
            model,
            optimizer,
            batches,
            epochs,
            device,
            profile,
            autocast_dtype,
            count_calls,
            objective=objective_for(module),
        )
    return Run.measured("limit", epochs_out, setup, memory)


#: what a plain script runs with (the seeds set none of the framework's speed settings)
TORCH_DEFAULTS = "denormals not flushed, float32 matmul precision highest, cuDNN autotuner off"


@dataclass(frozen=True)
class SeedsJob:
    """(b) for one case, to run in a fresh process: the net comes from ``cfg`` and ``seed``."""

    cfg: DictConfig
    dims: tuple[int, ...]
    seed: int
    data: BenchData
    case: Case
    epochs: int
    device: torch.device
    profile: bool = False
    count_calls: bool = False
    threads: int = 1

    def run(self) -> Run:
        torch.set_num_threads(self.threads)
        torch_defaults(self.device)
        from hydra.core.hydra_config import HydraConfig

        from aelightning.builders import build_model
        from aelightning.runtime.settings import skip_nvml_check

        skip_nvml_check()  # importing Lightning set it; a plain script does not (see runtime)
        HydraConfig().set_config(self.cfg)
        torch.manual_seed(self.seed)
        module = build_model(self.cfg, self.dims)
        run = run_seeds(
            module, self.data, self.case, self.epochs, self.device, self.profile, self.count_calls
        )
        run.extra.update(
            pid=os.getpid(),
            cpu_threads=torch.get_num_threads(),
            # a denormal times one is zero only when denormals are flushed
            denormals_flushed=bool(torch.tensor([1e-39]).mul(1.0).item() == 0.0),
        )
        return run


def run_seeds_apart(job: SeedsJob) -> Run:
    """(b) in a fresh process, as the seeds' script runs: torch's defaults in every thread.

    In the benchmark's own process the OpenMP worker threads keep the denormal flag they
    were created with (the framework's), so with two or more threads (b) would run with
    flushed denormals on half of every op; its resident memory would also be the shared
    process's. ``job.threads`` should be the number the other ways use.
    """
    context = multiprocessing.get_context("spawn")
    job = replace(job, data=replace(job.data, train_images=None))  # (b) reads the files
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(job.run).result()


def torch_defaults(device: torch.device) -> None:
    """Torch's own process-wide settings (a fresh process has them already; set for clarity)."""
    torch.set_flush_denormal(False)
    torch.set_float32_matmul_precision("highest")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False


def autocast_dtype_for(precision: str) -> torch.dtype | None:
    precision = str(precision)
    if precision.startswith("bf16") and "mixed" in precision:
        return torch.bfloat16
    if precision.startswith("16") and "mixed" in precision:
        return torch.float16
    return None

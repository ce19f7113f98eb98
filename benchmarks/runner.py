"""Runs the cases (alternating the three ways, repeats, profile) and the scaling series."""

from __future__ import annotations

import gc
import json
import math
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor

from aelightning.config import compose_config
from aelightning.data.images import EXTENSIONS
from aelightning.runtime.settings import (
    RuntimeSettings,
    configure_early,
    configure_model,
    configure_process,
)
from benchmarks.cases import (
    ANIME_CONV,
    CASES,
    FRAMEWORK_WAYS,
    LETTER,
    METHODS,
    Case,
    Plan,
    case_available,
)
from benchmarks.clock import framework_parts
from benchmarks.data import (
    BenchData,
    mnist_source,
    prepare_anime,
    prepare_mnist,
    write_standin_faces,
)
from benchmarks.measure import Run, rss_mb
from benchmarks.report import check_targets, environment, markdown
from benchmarks.ways import (
    TORCH_DEFAULTS,
    SeedsJob,
    autocast_dtype_for,
    run_framework,
    run_limit,
    run_seeds_apart,
)

#: the image folder module's own extensions (real face sets are JPEGs; the stand-in is PNG)
IMAGE_SUFFIXES = tuple(f".{e}" for e in EXTENSIONS)


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
    command: str = "python -m benchmarks"


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
            images = (
                p for p in self.anime_folder().rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
            )
            for src in sorted(images):
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
    def config(
        self, case: Case, data: BenchData, run_dir: Path, steps_per_call: int | None = None
    ) -> DictConfig:
        accelerator = "gpu" if self.opts.device.type == "cuda" else "cpu"
        overrides = [
            *case.overrides,
            *data.overrides,
            f"trainer.accelerator={accelerator}",
            f"trainer.max_epochs={self.opts.plan.epochs}",
            "test=false",
            f"seed={self.seed}",
        ]
        if accelerator == "gpu":
            overrides.insert(0, "trainer=gpu")
        if self.opts.cpu_threads is not None:
            overrides.append(f"runtime.cpu_threads={self.opts.cpu_threads}")
        forced = [] if steps_per_call is None else [f"runtime.steps_per_call={steps_per_call}"]
        return compose_config(run_dir, [*overrides, *self.opts.sets, *forced])

    def fresh_module(self, cfg: DictConfig, dims: tuple[int, ...]) -> Any:
        from aelightning.builders import build_model

        torch.manual_seed(self.seed)
        return build_model(cfg, dims)

    # -- runs ------------------------------------------------------------------------------
    def run_method(
        self,
        method: str,
        case: Case,
        data: BenchData,
        profile: bool = False,
        count_calls: bool = False,
    ) -> Run:
        """One run of one way; ``count_calls`` adds an untimed epoch under a call counter."""
        run_dir = Path(tempfile.mkdtemp(prefix=f"{case.name}-{method}-", dir=self.work))
        cfg = self.config(case, data, run_dir, FRAMEWORK_WAYS.get(method))
        dims = (3, case.image_size, case.image_size) if case.data == "anime" else (1, 28, 28)
        device = self.opts.device
        try:
            if method in FRAMEWORK_WAYS:
                run = run_framework(cfg, run_dir, device, profile, count_calls)
                if profile:
                    report = run_dir / "fit-profile.txt"
                    if report.is_file():
                        shutil.copy(report, self.opts.out / f"profile-{case.name}.txt")
                return run
            if method == "seeds":
                job = SeedsJob(
                    cfg,
                    dims,
                    self.seed,
                    data,
                    case,
                    epochs=self.opts.plan.epochs,
                    device=device,
                    profile=profile,
                    count_calls=count_calls,
                    threads=torch.get_num_threads(),  # as many as (a) and (c) use
                )
                return run_seeds_apart(job)
            module = self.fresh_module(cfg, dims)
            settings = RuntimeSettings.from_config(cfg.get("runtime"), cfg.get("compile", False))
            configure_process(settings, device.type)
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
                count_calls,
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
                run = self.run_method(method, case, data, count_calls=rep == 0)
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
            for method in ("framework_k1", "framework", "limit"):
                run = self.run_method(method, case, data)
                row[method] = run.samples_per_s
                row[f"{method}_peak_rss_mb"] = run.peak_rss_mb
                if run.gpu_peak_mb is not None:
                    row[f"{method}_gpu_peak_mb"] = run.gpu_peak_mb
                if method in FRAMEWORK_WAYS:
                    row[f"{method}_lightning_calls"] = run.extra.get("lightning_calls_per_step")
            row["a/c"] = _ratio(row["framework"], row["limit"])
            row["a1/c"] = _ratio(row["framework_k1"], row["limit"])
            print(
                f"[bench] scaling {case.name}: (a) {row['framework']:,.0f} (a1, K=1) "
                f"{row['framework_k1']:,.0f} (c) {row['limit']:,.0f} samples/s",
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
        """Load the data module in a fresh process and count what its split tensors hold.

        A fresh process, because in this one the allocator hands memory freed by earlier runs
        back out, and resident memory would not grow at all.
        """
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            row = pool.submit(probe_memory, data.overrides, str(self.work / "probe")).result()
        return {"data": kind, "c_h_w": math.prod(chw), **row}


def probe_memory(overrides: list[str], run_dir: str) -> dict[str, Any]:
    """Set up the composed data module; its tensors' bytes and the growth of resident memory."""
    from hydra.utils import instantiate

    cfg = compose_config(Path(run_dir), overrides)
    gc.collect()
    before = rss_mb()
    dm = instantiate(cfg.data, _recursive_=False)
    dm.prepare_data()
    dm.setup()
    after = rss_mb()
    splits = ("train", "val", "test")
    images = [getattr(dm, f"{s}_images") for s in splits]
    labels = [getattr(dm, f"{s}_labels") for s in splits]
    n = sum(len(t) for t in images)
    image_bytes = sum(t.nbytes for t in images)
    return {
        "images": n,
        "image_bytes": image_bytes,
        "bytes_per_image": image_bytes / n,
        "label_bytes_per_image": sum(t.nbytes for t in labels) / n,
        "rss_growth_mb": after - before,
        "rss_growth_per_image": (after - before) * 2**20 / n,
        "memory_mapped": any(_is_mmap(t) for t in images),
    }


def _is_mmap(t: Tensor) -> bool:
    """True when the tensor's memory is a file mapping (a cached image folder).

    Looked up in ``/proc/self/maps`` by address, since the cache is mapped by numpy and torch's
    storage does not know it; where that file does not exist, torch's own file mappings.
    """
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return bool(getattr(t.untyped_storage(), "filename", None))
    address = t.data_ptr()
    for line in maps:
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return len(fields) == 6 and fields[5].startswith("/")
    return False


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def summarize_case(case: Case, data: BenchData, runs: dict[str, list[Run]]) -> dict[str, Any]:
    median = {m: statistics.median(r.samples_per_s for r in runs[m]) for m in METHODS}
    cpu = {m: statistics.median(r.samples_per_cpu_s for r in runs[m]) for m in METHODS}
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
        "a1/c": _ratio(median["framework_k1"], median["limit"]),
        "median_samples_per_cpu_s": cpu,
        "a/b_cpu": _ratio(cpu["framework"], cpu["seeds"]),
        "a/c_cpu": _ratio(cpu["framework"], cpu["limit"]),
        "a1/c_cpu": _ratio(cpu["framework_k1"], cpu["limit"]),
        # Lightning steps per optimiser step (1 at K=1; 1/K under runtime.steps_per_call)
        "lightning_calls_per_step": {
            m: statistics.median(r.extra.get("lightning_calls_per_step") or 1.0 for r in runs[m])
            for m in FRAMEWORK_WAYS
        },
        "peak_rss_mb": {m: max(r.peak_rss_mb for r in runs[m]) for m in METHODS},
        "gpu_peak_mb": {m: runs[m][0].gpu_peak_mb for m in METHODS},
        "fit_s": statistics.median(r.extra.get("fit_s", 0.0) for r in runs["framework"]),
        "calls_per_step": {m: runs[m][0].calls_per_step() for m in METHODS},
        "runs": {m: [r.as_dict() for r in runs[m]] for m in METHODS},
    }


def profile_row(method: str, run: Run) -> dict[str, Any]:
    ms = run.ms_per_step()
    parts = framework_parts(ms) if method == "framework" else ms
    return {"ms_per_step": parts, "samples_per_s": run.samples_per_s}


def run(opts: Options) -> dict[str, Any]:
    """Run every selected case and the scaling series; write bench.json and bench.md."""
    opts.out.mkdir(parents=True, exist_ok=True)
    # before any tensor work, so that every OpenMP thread inherits it (see flush_denormals)
    configure_early(RuntimeSettings())  # the framework's defaults
    env = environment(opts.device)
    started = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="aelightning-bench-") as tmp:
        bench = Bench(opts, Path(tmp))
        # (a) and (c) run with the framework's process-wide settings, (b) in its own process
        # with torch's defaults; the number of threads is the same for all three (same cores)
        probe = bench.config(CASES[0], BenchData(overrides=[]), Path(tmp) / "probe")
        settings = RuntimeSettings.from_config(probe.get("runtime"), probe.get("compile", False))
        applied = configure_process(settings, opts.device.type)
        notes.append(
            "Process settings of (a) and (c): "
            + ", ".join(f"{k}={v}" for k, v in applied.items())
            + f"; (b) runs in a fresh process with torch's defaults ({TORCH_DEFAULTS})"
            + " in every thread, as the seeds' script would, and the same number of threads"
            + " (its peak RSS is that process's)."
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
            anime = ANIME_CONV
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
        "date": time.strftime("%Y-%m-%d"),
        "load_average_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    (opts.out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    (opts.out / "bench.md").write_text(markdown(result))
    return result

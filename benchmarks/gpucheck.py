"""``make gpu-check``: the GPU paths of the README run for real on one CUDA device (< 5 min).

* every objective (``conf/model/*.yaml``) x net (mlp, conv, vgg13 at MNIST's 28x28) for a few
  steps with ``trainer=gpu`` (bf16-mixed) and the data resident on the device: no image copied
  from host to device during the steps, a finite loss, checkpoints saved and reloaded on the
  CPU with the same outputs (within bf16's tolerance), ``channels_last`` on for conv nets;
* ``compile=true`` for one model: compile time and step time, compiled vs not;
* throughput of the framework, with one optimiser step per Lightning step (K=1) and with
  ``runtime.steps_per_call=auto``, vs the in-memory limit loop (the bench's (a1), (a) and (c)),
  with Lightning steps per optimiser step, for the MLP at batch 32, 256 and 1024 and the conv AE;
* with 2+ devices, ``trainer=ddp`` for two epochs through the real CLI: disjoint shards and
  the same final weights on every rank.

A table on stdout and ``gpucheck.json``; exit status 1 naming the failing cases. Without CUDA
it says so and runs ``--dry-run``: the same cases on the CPU with tiny budgets (what the test
suite runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aelightning.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
NETS = ("mlp", "conv", "vgg13")
#: the kinds of case, in the order they run (``--only``)
GROUPS = ("matrix", "compile", "throughput", "ddp")
#: nets kept small: the check proves the path, the bench measures speed
NET_SIZES = {
    "mlp": [],
    "conv": [],
    "vgg13": ["net.base_width=16"],
}
DRY_NET_SIZES = {
    "mlp": ["net.hidden_dims=[32]", "net.latent_dim=8"],
    "conv": ["net.channels=[4,8]", "net.latent_dim=8"],
    "vgg13": ["net.base_width=2"],
}
QUIET = [
    "data.source=sample",
    "logger=none",
    "test=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.figures=null",
    "callbacks.projector=null",
    "callbacks.reconstructions=null",
]


@dataclass(frozen=True)
class Budget:
    """How much each kind of case runs."""

    steps: int  # training batches of the objective x net cases
    batch_size: int
    compile_steps: int
    mlp_samples: int  # throughput
    conv_samples: int
    epochs: int  # throughput epochs (the first is warm-up)
    atol: float  # reloaded-on-CPU outputs vs the device's


GPU = Budget(steps=8, batch_size=64, compile_steps=30, mlp_samples=20_000, conv_samples=5_000,
             epochs=3, atol=5e-2)  # fmt: skip
DRY = Budget(steps=2, batch_size=16, compile_steps=4, mlp_samples=256, conv_samples=128,
             epochs=2, atol=1e-4)  # fmt: skip


@dataclass
class Result:
    """One row of the table."""

    case: str
    ok: bool | None  # None: skipped
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "skip" if self.ok is None else ("ok" if self.ok else "FAIL")


def objectives() -> list[str]:
    """Every objective: the ``conf/model/*.yaml`` options."""
    return sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))


class Check:
    """Runs the cases on ``device`` (cuda, or cpu with ``dry``) and collects the results."""

    def __init__(self, device: torch.device, work: Path, dry: bool, ddp_devices: int):
        self.device, self.work, self.dry = device, work, dry
        self.budget = DRY if dry else GPU
        self.ddp_devices = ddp_devices
        self.results: list[Result] = []

    # -- plumbing ---------------------------------------------------------------------------
    def case(self, name: str, fn: Callable[[], Result]) -> Result:
        print(f"[gpu-check] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            result = fn()
        except Exception as exc:  # a failing case is a row, and the next case still runs
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            result = Result(name, False, last[:300])
        result.values.setdefault("seconds", round(time.perf_counter() - started, 2))
        self.results.append(result)
        print(f"[gpu-check] {name}: {result.status} {result.detail}", flush=True)
        return result

    def trainer_overrides(self) -> list[str]:
        if self.device.type == "cuda":
            return ["trainer=gpu", "data.on_device=true"]
        return ["trainer.accelerator=cpu"]

    def compose(self, run_dir: Path, overrides: list[str]) -> Any:
        from aelightning.config import compose_config

        return compose_config(run_dir, [*overrides, "print_config=false"])  # 20+ fits: no trees

    def fit(self, name: str, overrides: list[str], count_copies: bool = True) -> dict[str, Any]:
        """One real ``train(cfg)`` with the probe; its report, the outputs and the run dir."""
        from aelightning.cli.train import train

        run_dir = self.work / name
        probe = run_dir / "probe.json"
        cfg = self.compose(
            run_dir,
            [
                *QUIET,
                *self.trainer_overrides(),
                f"data.data_dir={self.work / 'data'}",
                f"data.batch_size={self.budget.batch_size}",
                "trainer.max_epochs=1",
                f"trainer.limit_val_batches={1 if self.dry else 2}",
                "trainer.num_sanity_val_steps=0",
                "+callbacks.gpucheck_probe._target_=benchmarks.gpuprobe.FitProbe",
                f"+callbacks.gpucheck_probe.out={probe}",
                f"+callbacks.gpucheck_probe.count_copies={count_copies}",
                *overrides,
            ],
        )
        result = train(cfg)
        return {
            "result": result,
            "probe": json.loads(probe.read_text()),
            "outputs": torch.load(probe.with_suffix(".pt"), weights_only=True),
            "cfg": cfg,
        }

    # -- the objective x net matrix ---------------------------------------------------------
    def objective_net(self, model: str, net: str) -> Result:
        from aelightning.checkpointing.checkpoint import (
            checkpoint_dir,
            find_last_checkpoint,
            load_model_from_checkpoint,
        )

        name = f"{model}x{net}"
        sizes = (DRY_NET_SIZES if self.dry else NET_SIZES)[net]
        layout = ["runtime.channels_last=true"] if self.dry and net != "mlp" else []
        run = self.fit(
            name,
            [f"model={model}", f"net={net}", *sizes, *layout,
             f"trainer.limit_train_batches={self.budget.steps}"],
        )  # fmt: skip
        probe, metrics = run["probe"], run["result"]["metrics"]
        problems = []
        bad = {k: v for k, v in metrics.items() if not torch.isfinite(torch.tensor(v))}
        if not metrics or bad:
            problems.append(f"loss not finite: {bad or 'no metrics'}")
        if not probe["image_copies_seen"]:
            problems.append("the copy counter saw no step (not watching the training steps)")
        if probe["host_to_device_image_copies"]:
            problems.append(f"{probe['host_to_device_image_copies']} host-to-device image copies")
        if self.device.type == "cuda" and not probe["data_device"].startswith("cuda"):
            problems.append(f"data on {probe['data_device']}, not on the device")
        if net != "mlp" and probe["channels_last"] is not True:
            problems.append("channels_last not active for a conv net")
        ckpt = run["result"]["best_checkpoint"] or find_last_checkpoint(checkpoint_dir(run["cfg"]))
        if ckpt is None:
            problems.append("no checkpoint saved")
            diff = float("nan")
        else:
            model_cpu = load_model_from_checkpoint(ckpt, map_location="cpu")
            with torch.no_grad():
                y = model_cpu(run["outputs"]["x"])
            diff = float((y - run["outputs"]["y"]).abs().max())
            if not diff <= self.budget.atol:
                problems.append(f"CPU reload differs by {diff:.3g} (> {self.budget.atol})")
        values = {
            "loss": metrics.get("val/loss"),
            "h2d_image_copies": probe["host_to_device_image_copies"],
            "image_copies_seen": probe["image_copies_seen"],
            "channels_last": probe["channels_last"],
            "precision": probe["precision"],
            "data_device": probe["data_device"],
            "cpu_reload_max_abs_diff": diff,
            "median_step_ms": _median_ms(probe["step_s"]),
        }
        detail = "; ".join(problems) or (
            f"loss {values['loss']:.4f}, 0 H2D image copies ({probe['image_copies_seen']} "
            f"image-sized copies watched), reload diff {diff:.2g}"
            + (", channels_last" if probe["channels_last"] else "")
        )
        return Result(name, not problems, detail, values)

    # -- compile ------------------------------------------------------------------------------
    def compile_case(self) -> Result:
        steps = [
            f"trainer.limit_train_batches={self.budget.compile_steps}",
            "model=ae",
            "net=mlp",
            "runtime.steps_per_call=1",  # the probe times each Lightning step: one step each
        ]
        if self.dry:  # dynamo's tracing without inductor's C++/Triton code generation
            steps += [*DRY_NET_SIZES["mlp"], "runtime.compile_backend=eager"]
        times = {}
        for compiled in (False, True):
            run = self.fit(f"compile-{compiled}", [*steps, f"compile={str(compiled).lower()}"],
                           count_copies=False)  # fmt: skip
            times[compiled] = run["probe"]["step_s"]
        plain, fast = _median_ms(times[False][1:]), _median_ms(times[True][1:])
        compile_s = times[True][0] - times[False][0]
        values = {
            "compile_s": round(compile_s, 2),
            "step_ms_eager": plain,
            "step_ms_compiled": fast,
            "speedup": round(plain / fast, 2) if fast else None,
        }
        detail = (
            f"compile {compile_s:.1f} s (first step, beyond an eager first step); step "
            f"{plain:.2f} ms eager vs {fast:.2f} ms compiled"
        )
        return Result("compile=true ae x mlp", True, detail, values)

    # -- throughput: framework vs the limit loop ---------------------------------------------
    def throughput(self) -> Result:
        from benchmarks.cases import CASES, Case, Plan
        from benchmarks.runner import Bench, Options

        plan = Plan(
            mlp_samples=self.budget.mlp_samples,
            conv_samples=self.budget.conv_samples,
            epochs=self.budget.epochs,
            repeats=1,
        )
        opts = Options(
            out=self.work / "bench",
            plan=plan,
            device=self.device,
            data_dir=None,
            anime_dir=None,
            sets=QUIET[1:],
            profile=False,
            scaling=False,
            cases=(),
        )
        cases = [
            CASES[0],  # mlp-b32
            CASES[1],  # mlp-b256
            Case("mlp-b1024", "mlp", "mnist", 1024),
            CASES[2],  # conv-b128
        ]
        rows = Bench(opts, self.work / "bench").throughput_series(cases)
        keys = ("framework_k1", "framework", "limit", "a1/c", "a/c", "framework_lightning_calls")
        values = {r["case"]: {k: r[k] for k in keys} for r in rows}
        bad = [
            r["case"]
            for r in rows
            if not (r["framework"] > 0 and r["framework_k1"] > 0 and r["limit"] > 0)
        ]
        detail = "; ".join(
            f"{r['case']} (a) K=1 {r['framework_k1']:,.0f} / auto {r['framework']:,.0f} "
            f"({r['framework_lightning_calls'] or 1:.3f} Lightning steps per optimiser step) vs "
            f"(c) {r['limit']:,.0f} samples/s: a/c {r['a1/c']:.2f} (K=1) / {r['a/c']:.2f} (auto)"
            for r in rows
        )
        return Result("throughput (a) vs (c)", not bad, detail, values)

    # -- DDP ----------------------------------------------------------------------------------
    def ddp(self) -> Result:
        n = self.ddp_devices
        out = self.work / "ddp"
        accelerator = "gpu" if self.device.type == "cuda" else "cpu"
        args = [
            "trainer=ddp",
            f"trainer.accelerator={accelerator}",
            f"trainer.devices={n}",
            "trainer.max_epochs=2",
            *(["trainer.precision=bf16-mixed"] if accelerator == "gpu" else []),
            *QUIET,
            f"data.data_dir={self.work / 'data'}",
            f"hydra.run.dir={out / 'run'}",
            f"paths.root_dir={out}",
            "+callbacks.shards._target_=benchmarks.gpuprobe.ShardProbe",
            f"+callbacks.shards.out_dir={out / 'shards'}",
            *(DRY_NET_SIZES["mlp"] if self.dry else []),
        ]
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        proc = subprocess.run(
            [sys.executable, "-m", "aelightning", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return Result(f"ddp x{n}", False, f"exit {proc.returncode}: {tail[:200]}")
        ranks = [json.loads((out / "shards" / f"rank{r}.json").read_text()) for r in range(n)]
        problems = []
        for epoch in ("0", "1"):
            seen = [set(rank["seen"].get(epoch, [])) for rank in ranks]
            if sum(len(s) for s in seen) != len(set().union(*seen)):
                problems.append(f"epoch {epoch}: ranks' shards overlap")
        if len({rank["weights_sha1"] for rank in ranks}) != 1:
            problems.append("final weights differ between ranks")
        sizes = [len(rank["seen"].get("0", [])) for rank in ranks]
        detail = "; ".join(problems) or (
            f"{n} ranks, disjoint shards of {sizes} images per epoch, same final weights"
        )
        return Result(f"ddp x{n}", not problems, detail, {"shard_sizes": sizes})

    # -- all ----------------------------------------------------------------------------------
    def run(self, only: set[str]) -> list[Result]:
        if "matrix" in only:
            for model in objectives():
                for net in NETS:
                    self.case(f"{model}x{net}", lambda m=model, n=net: self.objective_net(m, n))
        if "compile" in only:
            self.case("compile=true ae x mlp", self.compile_case)
        if "throughput" in only:
            self.case("throughput (a) vs (c)", self.throughput)
        if "ddp" in only:
            if self.ddp_devices >= 2:
                self.case(f"ddp x{self.ddp_devices}", self.ddp)
            else:
                why = "one device" if self.device.type == "cuda" else "dry run: --ddp-devices 0"
                self.results.append(Result("ddp", None, f"skipped: {why}"))
        return self.results


def table(results: list[Result]) -> str:
    width = max(len(r.case) for r in results)
    lines = [f"{'case':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.case:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    return "\n".join(lines)


def _median_ms(seconds: list[float]) -> float:
    return round(1000 * float(torch.tensor(seconds).median()), 3) if seconds else float("nan")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpucheck", description=__doc__)
    p.add_argument("--dry-run", action="store_true", help="the same cases on CPU, tiny budgets")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpucheck")
    p.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated, some of: {', '.join(GROUPS)}",
    )
    p.add_argument(
        "--ddp-devices",
        type=int,
        default=None,
        help="ranks of the ddp case (default: the CUDA device count; 0 in a dry run)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MPLBACKEND", "Agg")
    args = parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; running the CPU self-test (--dry-run) instead.")
        dry = True
    device = torch.device("cpu" if dry else "cuda")
    ddp = args.ddp_devices
    if ddp is None:
        ddp = 0 if dry else torch.cuda.device_count()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not only or only - set(GROUPS):
        raise SystemExit(f"error: --only takes some of {', '.join(GROUPS)}, got {args.only!r}")
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpucheck-", dir=args.out))
    try:
        results = Check(device, work, dry, ddp).run(only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (dry run)",
        "dry_run": dry,
        "torch": torch.__version__,
        "seconds": round(seconds, 1),
        "results": [
            {"case": r.case, "status": r.status, "detail": r.detail, **r.values} for r in results
        ],
    }
    (args.out / "gpucheck.json").write_text(json.dumps(report, indent=2, default=str))
    print(table(results))
    print(f"[gpu-check] {report['device']}, {seconds:.0f} s; wrote {args.out / 'gpucheck.json'}")
    failed = [r.case for r in results if r.ok is False]
    if failed:
        print(f"gpu-check FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

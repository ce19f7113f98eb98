"""``bench.md``: the tables a person reads, from the numbers in ``bench.json``."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import lightning as L
import torch

from aelightning.errors import DataError
from benchmarks.cases import CASES, LETTER, METHODS

#: Targets of issues 7, 16 and 21 (reported, not asserted): (case, ratio, minimum)
TARGETS = (
    ("mlp-b32", "a/b", 2.0),
    ("mlp-b256", "a/b", 2.0),
    ("mlp-b256", "a/c", 0.85),
    ("mlp-b32", "a/c", 0.9),
    ("mlp-b256", "a/c", 0.9),
    ("conv-b128", "a/c", 0.95),
    ("anime-conv64-b64", "a/c", 0.95),
    ("anime-vgg13-b32", "a/c", 0.95),
    ("anime-vae64-b64", "a/c", 0.95),
)


def bf16_matmuls(flags: set[str]) -> str:
    """What the CPU has for bf16 matrix products, which decides the bf16-mixed (anime) rows:
    with AMX tiles (a) and (c) ran about twice (b)'s float32 speed on this project's machine;
    with AVX-512 bf16 alone, at about float32's speed (both measured by ``make bench``)."""
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512, no AMX"
    return "none"


def environment(device: torch.device) -> dict[str, Any]:
    cpu, flags = "", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "platform": platform.platform(),
        "cpu": cpu or platform.processor(),
        "cpu_bf16": bf16_matmuls(flags) if flags else None,  # None: no /proc/cpuinfo flags
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _bf16(env: dict[str, Any]) -> str:
    return f", bf16 matmuls: {env['cpu_bf16']}" if env.get("cpu_bf16") else ""


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _speed_cells(case: dict[str, Any]) -> str:
    """The cells both tables share: samples/s of (a), (a1), (b), (c) and the ratios."""
    m = case["median_samples_per_s"]
    return (
        f"{_fmt(m['framework'])} | {_fmt(m.get('framework_k1'))} | {_fmt(m['seeds'])} "
        f"| {_fmt(m['limit'])} | {_fmt(case['a/b'], 2)} | {_fmt(case['a/c'], 2)} "
        f"| {_fmt(case.get('a1/c'), 2)}"
    )


def _target_lines(targets: list[dict[str, Any]], missed: str, by_cpu: bool = False) -> list[str]:
    """``- case ratio ≥ minimum: value (met | <missed> | not measured)``, one per target."""
    lines = []
    for t in targets:
        status = {True: "met", False: missed, None: "not measured"}[t["met"]]
        cpu = f"; by CPU time {_fmt(t['value_cpu'], 2)}" if by_cpu and t.get("value_cpu") else ""
        lines.append(
            f"- {t['case']} {t['ratio']} ≥ {t['minimum']}: {_fmt(t['value'], 2)} ({status}{cpu})"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    env, plan = result["environment"], result["plan"]
    lines = [
        "# aelightning benchmark",
        "",
        f"Machine: {env['cpu']} ({env['cpus']} CPUs{_bf16(env)}), device `{env['device']}`"
        + (f" ({env['gpu']})" if env.get("gpu") else "")
        + f", torch {env['torch']}, Lightning {env['lightning']}; "
        f"{result['cpu_threads']} intra-op thread(s); load average at start "
        f"{_fmt(env['load_average'][0] if env['load_average'] else None, 1)}, at end "
        f"{_fmt(result['load_average_end'], 1)}.",
        f"Command: `{result['command']}`. {plan['epochs']} epochs per run (the first is warm-up, "
        f"not timed), {plan['repeats']} repeat(s) alternating (a)/(a1)/(b)/(c), medians.",
        "",
        "(a) framework: `Trainer.fit` from conf/train.yaml (progress bar, TensorBoard, "
        "checkpoints), training epochs up to validation, with its default "
        "`runtime.steps_per_call=auto` (several optimiser steps per Lightning step, same "
        "results); (a1) the same with `runtime.steps_per_call=1` (Lightning's own loop, one "
        "optimiser step per Lightning step); L/step: Lightning steps per optimiser step in the "
        "timed epochs (1/K); (b) the seeds' loop: torchvision "
        "dataset + `ToTensor` + `DataLoader(shuffle=True)`, `Adam(lr=1e-3)`; (c) the limit: one "
        "float tensor on the device, the framework's optimiser and runtime settings. "
        "Samples/s are per wall-clock second; the CPU columns divide by the process's CPU "
        "seconds instead, which other work on a shared machine does not inflate. "
        "fit = the whole `Trainer.fit` (setup, sanity check, validation, checkpoints). "
        "calls/step: function calls (Python and builtins such as torch ops) per training step, "
        "counted by cProfile in one extra epoch: a measure of loop overhead that a busy machine "
        "does not change.",
        "",
        "| case | batch | samples | (a) samples/s | (a1) K=1 samples/s | (b) samples/s "
        "| (c) samples/s | a/b | a/c | a1/c | L/step a / a1 | a/b CPU | a/c CPU "
        "| calls/step a / a1 / b / c | peak RSS a / b / c (MB) | fit (a), s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["cases"]:
        if c.get("skipped"):
            lines.append(
                f"| {c['case']} | {c['batch_size']} | – | skipped: {c['skipped']} "
                + "| " * 13
                + "|"
            )
            continue
        rss, calls = c["peak_rss_mb"], c.get("calls_per_step", {})
        lightning = c.get("lightning_calls_per_step", {})
        lines.append(
            f"| {c['case']} | {c['batch_size']} | {c['samples']:,} | {_speed_cells(c)} "
            f"| {_fmt(lightning.get('framework'), 3)} / {_fmt(lightning.get('framework_k1'), 3)} "
            f"| {_fmt(c['a/b_cpu'], 2)} | {_fmt(c['a/c_cpu'], 2)} "
            f"| {' / '.join(_fmt(calls.get(k)) for k in METHODS)} "
            f"| {_fmt(rss['framework'])} / {_fmt(rss['seeds'])} / {_fmt(rss['limit'])} "
            f"| {_fmt(c['fit_s'], 1)} |"
        )
    lines += ["", "Targets:", "", *_target_lines(result["targets"], "NOT met", by_cpu=True)]
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
                f"| {col.replace('_', ' ')} | samples | (a) framework | (a1) K=1 | (c) limit "
                "| a/c | a1/c | L/step (a) | peak RSS (a), MB |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r[col]} | {r['samples']:,} | {_fmt(r['framework'])} | "
                    f"{_fmt(r.get('framework_k1'))} | {_fmt(r['limit'])} | {_fmt(r['a/c'], 2)} "
                    f"| {_fmt(r.get('a1/c'), 2)} | {_fmt(r.get('framework_lightning_calls'), 3)} "
                    f"| {_fmt(r['framework_peak_rss_mb'])} |"
                )
    memory = scaling.get("memory") or []
    if memory:
        lines += [
            "",
            "## Memory vs dataset size (in-memory uint8 sets, all splits)",
            "",
            "Each row loads the data module in a fresh process; RSS growth is what its resident "
            "memory grew by during `setup()` (decoding buffers included).",
            "",
            "| data | images | image bytes | bytes/image | C·H·W | label bytes/image "
            "| RSS growth, MB | RSS growth/image, bytes | memory-mapped |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in memory:
            lines.append(
                f"| {r['data']} | {r['images']:,} | {r['image_bytes']:,} | "
                f"{_fmt(r['bytes_per_image'], 1)} | {r['c_h_w']:,} | "
                f"{_fmt(r['label_bytes_per_image'], 1)} | {_fmt(r['rss_growth_mb'], 1)} | "
                f"{_fmt(r['rss_growth_per_image'])} | "
                f"{'yes' if r['memory_mapped'] else 'no'} |"
            )
    if result.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def check_targets(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {c["case"]: c for c in cases if not c.get("skipped")}
    out = []
    for name, ratio, minimum in TARGETS:
        case = by_name.get(name, {})
        value, value_cpu = case.get(ratio), case.get(f"{ratio}_cpu")
        met = None if value is None or math.isnan(value) else bool(value >= minimum)
        out.append(
            {
                "case": name,
                "ratio": ratio,
                "minimum": minimum,
                "value": value,
                "met": met,
                "value_cpu": value_cpu,
            }
        )
    return out


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def readme_block(result: dict[str, Any]) -> str:
    """The README's part of ``bench.md``: the main table, what ran it, and the targets."""
    env, plan = result["environment"], result["plan"]
    lines = [
        f"`{result['command']}` on {env['cpu']} ({env['cpus']} CPUs{_bf16(env)}, device "
        f"`{env['device']}`"
        + (f", {env['gpu']}" if env.get("gpu") else "")
        + f"), torch {env['torch']}, Lightning {env['lightning']}, "
        f"{result['cpu_threads']} thread(s), load average {_fmt(env['load_average'][0], 1)} at "
        f"the start and {_fmt(result['load_average_end'], 1)} at the end, "
        f"{result.get('date', '')}, {result['seconds'] / 60:.0f} min: {plan['epochs']} epochs "
        f"per run (the first not timed), {plan['repeats']} repeats alternating the ways, medians. "
        "Samples/s; L/step: Lightning steps per optimiser step (1/K).",
        "",
        "| case | batch | (a) framework | (a1) K=1 | (b) seeds' loop | (c) limit | a/b | a/c "
        "| a1/c | L/step (a) | calls/step (a) / (a1) / (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in result["cases"]:
        calls = c.get("calls_per_step", {})
        lines.append(
            f"| {c['case']} | {c['batch_size']} | {_speed_cells(c)} "
            f"| {_fmt(c.get('lightning_calls_per_step', {}).get('framework'), 3)} "
            f"| {' / '.join(_fmt(calls.get(k)) for k in ('framework', 'framework_k1', 'limit'))} |"
        )
    lines += ["", "Targets (issues 7, 16, 21):", ""]
    lines += _target_lines(result["targets"], "**not met**")
    return "\n".join(lines) + "\n"


def publish(out: Path, readme: Path) -> None:
    """Put the main table of ``out/bench.json`` between the README's bench markers: a full
    run only (not ``--quick``, every case measured)."""
    from aelightning.cli.reproduce import publish as publish_page

    path = out / "bench.json"
    if not path.is_file():
        raise DataError(f"no {path}: run `make bench` first.")
    result = json.loads(path.read_text())
    if "--quick" in result["command"].split():
        raise DataError(f"{path} is from a --quick run; the README shows full runs only.")
    measured = {c["case"] for c in result["cases"] if not c.get("skipped")}
    missing = [c.name for c in CASES if c.name not in measured]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}; the README shows every case.")
    (out / "readme.md").write_text("# bench\n" + readme_block(result))
    publish_page(out, readme, readme.parent / "docs" / "figures", "readme.md", (BEGIN, END))

"""``python -m benchmarks``: options in, ``bench.json`` and ``bench.md`` out."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from aelightning.errors import DataError
from aelightning.runtime.settings import auto_cpu_threads
from benchmarks.cases import CASES, FULL, QUICK
from benchmarks.report import markdown, publish
from benchmarks.runner import Options, run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
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
    p.add_argument("--publish", action="store_true", help="then put the main table into README.md")
    p.add_argument(
        "--publish-only",
        action="store_true",
        help="put the last full run's table (--out) into README.md without running",
    )
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
        command=" ".join(["python -m benchmarks", *argv]),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        if args.publish_only:
            publish(args.out, Path("README.md"))
            print(f"[bench] README.md: the table of {args.out / 'bench.json'}")
            return {}
        if args.publish and args.quick:
            raise DataError("--publish takes a full run; the README shows no --quick numbers.")
        opts = options_from(args, [a for a in argv if a != "--publish"])
        result = run(opts)
        print(markdown(result))
        print(f"[bench] wrote {opts.out / 'bench.json'} and {opts.out / 'bench.md'}")
        if args.publish:
            publish(opts.out, Path("README.md"))
            print("[bench] README.md: the table of this run")
    except DataError as exc:
        raise SystemExit(f"error: {exc}") from None
    return result

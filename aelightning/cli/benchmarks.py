"""``make reproduce ARGS=--benchmarks``: the standard protocols, our number beside the published.

Each benchmark is ``ae-train experiment=<name>`` then ``ae-evaluate`` on its best checkpoint
(the same two commands as every other README result, through :mod:`aelightning.cli.reproduce`),
with the training's CPU time measured from the child processes. ``--publish`` writes the table
into the README between the benchmark markers, and only a complete full-MNIST run: a partial or
``--quick`` table is refused, so every published row came from the real command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aelightning.checkpointing.atomic import write_text_atomic
from aelightning.cli.reproduce import (
    Experiment,
    by_experiment,
    machine_description,
    run_all,
    seed_of,
    seeded,
    total_minutes,
)
from aelightning.errors import DataError


@dataclass(frozen=True)
class Published:
    """A number a reader knows, with where it comes from and what it cost."""

    value: str
    source: str
    budget: str


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    experiment: str
    protocol: str
    metric: str  # the key in ae-evaluate's metrics.json
    unit: str
    fmt: str
    published: tuple[Published, ...]


KERAS_BLOG = "Keras blog, *Building Autoencoders in Keras* (Chollet 2016)"
KERAS_PROTOCOL = "MNIST grey levels, per-pixel BCE on the 10,000 test images"

BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "vae_binarized",
        "VAE, Bernoulli decoder, 1 stochastic layer",
        "mnist_vae_binarized",
        "dynamically binarised MNIST, IW-NLL (k=5,000) on the 10,000 test images",
        "test/iw_nll",
        "nats",
        "{:.2f}",
        (
            Published(
                "86.76",
                "Burda et al. 2015, IWAE paper, Table 1 (VAE, k=1, 1 layer)",
                "≈3,280 epochs",
            ),
            Published(
                "89.78",
                "Pythae benchmark VAE (statically binarised, 200 IS samples)",
                "500 epochs",
            ),
        ),
    ),
    Benchmark(
        "keras_dense",
        "Dense 784-32-784",
        "keras_dense",
        KERAS_PROTOCOL,
        "test/bce",
        "",
        "{:.4f}",
        (Published("≈0.11", KERAS_BLOG, "50 epochs"),),
    ),
    Benchmark(
        "keras_sparse",
        "Sparse (L1 on the 32-d code)",
        "keras_sparse",
        KERAS_PROTOCOL + " plus the L1 term, as the blog's loss",
        "test/loss",
        "",
        "{:.4f}",
        (Published("0.10 (test loss)", KERAS_BLOG, "100 epochs"),),
    ),
    Benchmark(
        "keras_deep",
        "Deep dense 128-64-32",
        "keras_deep",
        KERAS_PROTOCOL,
        "test/bce",
        "",
        "{:.4f}",
        (Published("≈0.097", KERAS_BLOG, "100 epochs"),),
    ),
    Benchmark(
        "keras_conv",
        "Convolutional, 128-d code",
        "keras_conv",
        KERAS_PROTOCOL,
        "test/bce",
        "",
        "{:.4f}",
        (Published("0.094", KERAS_BLOG, "50 epochs"),),
    ),
    Benchmark(
        "keras_denoising",
        "Denoising conv (noise factor 0.5, clipped)",
        "keras_denoising",
        KERAS_PROTOCOL + ", noisy inputs vs clean targets",
        "test/bce",
        "",
        "{:.4f}",
        (Published("(no number stated)", KERAS_BLOG, "100 epochs"),),
    ),
)

#: evaluation of a benchmark: its number, not the figure gallery (minutes of t-SNE saved)
#: the protocol: k=5,000 importance samples as in Burda et al. (QUICK_EVAL lowers it)
EVAL = (
    "figures.enabled=false",
    "metrics.probes=false",
    "metrics.ssim=false",
    "projector_images=0",
    "metrics.iw_samples=5000",
)
#: --quick: the bundled sample, one epoch of a few batches, k=10 (QUICK_EVAL's)
QUICK_TRAIN = (
    "data.source=sample",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=5",
    "trainer.limit_val_batches=1",
)
QUICK_TITLE = " (quick smoke run: bundled sample, tiny budgets)"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"


def experiment_of(bench: Benchmark) -> Experiment:
    """The benchmark as a reproduce experiment: ``ae-train experiment=<name>``, evaluated
    for its number only."""
    overrides = (f"experiment={bench.experiment}",)
    return Experiment(bench.name, bench.title, overrides, quick=QUICK_TRAIN, evaluate=EVAL)


def value_of(bench: Benchmark, result: dict[str, Any]) -> float:
    """The benchmark's number from one run's evaluation (an error names the file)."""
    metrics = result["eval"].get("metrics", {})
    if bench.metric not in metrics:
        raise RuntimeError(f"{result['eval_dir']}/metrics.json has no {bench.metric}")
    return metrics[bench.metric]


def benchmarks_markdown(results: list[dict[str, Any]], quick: bool) -> str:
    """The side-by-side table: protocol, ours (and its spread over seeds), the published
    numbers, both budgets."""
    groups = {g[0]["experiment"].title: g for g in by_experiment(results)}
    lines = [
        "# Benchmarks" + (QUICK_TITLE if quick else ""),
        "",
        f"Made by `make reproduce ARGS=--benchmarks` on {machine_description()}; training "
        f"and evaluation took {total_minutes(results):.1f} min.",
        "",
        "| model | protocol | ours | published (source) | their budget | our budget | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for bench in BENCHMARKS:
        group = groups.get(bench.title)
        if group is None:
            continue
        r = group[0]
        ours = bench.fmt.format(value_of(bench, r)) + (f" {bench.unit}" if bench.unit else "")
        if len(group) > 1:
            values = [value_of(bench, g) for g in group]
            ours += (
                f" (seeds {' / '.join(seed_of(g) for g in group)}: "
                f"{' / '.join(bench.fmt.format(v) for v in values)}; spread "
                f"{bench.fmt.format(max(values) - min(values))})"
            )
        budget = (
            f"{r['train'].get('epochs')} epochs, {r['train_cpu_s'] / 60:.0f} CPU-min "
            f"({r['train_s'] / 60:.0f} min wall)"
        )
        for i, pub in enumerate(bench.published):
            first = i == 0
            lines.append(
                "| "
                + " | ".join(
                    [
                        bench.title if first else "″",
                        bench.protocol if first else "″",
                        ours if first else "″",
                        f"{pub.value} ({pub.source})",
                        pub.budget,
                        budget if first else "″",
                        f"`ae-train experiment={bench.experiment}`" if first else "″",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        "Ours: `ae-evaluate` on the best checkpoint (`test/iw_nll` for the VAE: importance-",
        "weighted NLL with k=5,000 posterior samples on the fixed binarisation of the test set,",
        "`data.binarize_seed=0`; `test/bce` for the Keras rows: mean per-pixel binary",
        "cross-entropy of the reconstructions; `test/loss` for the sparse one, BCE + L1 term).",
        "Our budget: training only, CPU time of the training process (all threads) and its wall",
        "time; the published budgets are the sources' own. Training data: the 55,000 training",
        "images (5,000 held out for validation).",
        "",
    ]
    return "\n".join(lines)


def publish_benchmarks(out: Path, readme: Path) -> None:
    """Put ``out/benchmarks.md`` between the README's benchmark markers, a complete full run
    only (every benchmark present, not ``--quick``)."""
    results = out / "benchmarks.md"
    if not results.is_file():
        raise DataError(f"no {results}: run `make reproduce ARGS=--benchmarks` first.")
    text = results.read_text()
    if QUICK_TITLE in text:
        raise DataError(f"{results} is from a --quick run; the README shows full-MNIST results.")
    missing = [b.name for b in BENCHMARKS if f"experiment={b.experiment}`" not in text]
    if missing:
        raise DataError(
            f"{results} lacks {', '.join(missing)}; the README shows the whole suite only."
        )
    page = readme.read_text()
    if page.count(BEGIN) != 1 or page.count(END) != 1 or page.index(BEGIN) > page.index(END):
        raise DataError(f"{readme} needs one '{BEGIN}' line followed by one '{END}' line.")
    body = text.split("\n", 1)[1].strip()  # without the page title
    before, rest = page.split(BEGIN, 1)
    write_text_atomic(readme, f"{before}{BEGIN}\n{body}\n{END}{rest.split(END, 1)[1]}")


def run_benchmarks(
    out: Path,
    data: list[str],
    quick: bool,
    only: list[str],
    publish: bool,
    readme: Path,
    seeds: Sequence[int] = (),
    rerun: bool = False,
) -> int:
    """The ``--benchmarks`` mode of ``reproduce``: run (each once per seed; finished runs
    reused), write ``benchmarks.md``, publish."""
    unknown = sorted(set(only) - {b.name for b in BENCHMARKS})
    if unknown:
        names = ", ".join(b.name for b in BENCHMARKS)
        print(
            f"error: --only {', '.join(unknown)}: no such benchmark; use {names}", file=sys.stderr
        )
        return 1
    chosen = [experiment_of(b) for b in BENCHMARKS if not only or b.name in only]
    try:
        results = run_all(seeded(chosen, seeds), out, data, quick, rerun, tag="benchmarks")
        text = benchmarks_markdown(results, quick)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_text_atomic(out / "benchmarks.md", text)
    print(text)
    print(f"\n[benchmarks] wrote {out / 'benchmarks.md'}")
    if not publish:
        return 0
    try:
        publish_benchmarks(out, readme)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"[benchmarks] the table is in {readme}")
    return 0

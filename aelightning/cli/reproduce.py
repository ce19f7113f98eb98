"""``make reproduce``: train the README's experiments, evaluate each, write the results page.

Every experiment is a plain ``ae-train experiment=...`` run followed by ``ae-evaluate`` on its
best checkpoint, each in its own process and run dir under ``outputs/reproduce/``, so what
the README shows is exactly what a user gets from those two commands. ``--quick`` runs the
same pipeline on the bundled MNIST sample with tiny budgets (a smoke test, minutes on 2 CPUs).

A finished run is reused when the same command is asked for again (its ``reproduce.json``
holds the command and its times), so a long reproduction can be built up in parts
(``--only``) and published once; ``--rerun`` trains everything anew. ``--seeds 42,1,2`` runs
every experiment once per seed and shows the spread of the headline metric.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aelightning.checkpointing.atomic import read_json, write_text_atomic
from aelightning.data.idx import find_idx_files
from aelightning.errors import DataError


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    overrides: tuple[str, ...]
    figures: tuple[str, ...] = ()  # figure names (stems) the README shows for this run
    quick: tuple[str, ...] = field(default=())  # extra overrides for --quick
    evaluate: tuple[str, ...] = ()  # extra ae-evaluate overrides
    #: run once per ``--seeds`` seed; False: a comparison variant, first seed only
    every_seed: bool = True


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("seed_ae", "MLP AE 784-256-64-20 (seed 001)", (), ("reconstructions",)),
    Experiment(
        "linear_dae",
        "Linear denoising AE, std 0.5, 5 epochs (seed 000)",
        ("experiment=mnist_linear_dae",),
        ("reconstructions", "noise_curve"),
    ),
    Experiment(
        "conv_ae",
        "Convolutional AE (seed 000)",
        ("experiment=mnist_conv_ae",),
        ("reconstructions",),
    ),
    Experiment(
        "ae3d_tanh",
        "784-128-64-12-3 tanh AE, 3-D code (seed 002)",
        ("experiment=mnist_ae3d_tanh",),
        ("codes_3d",),
    ),
    Experiment(
        "deep_ae",
        "784-1000-500-250-100 AE + early stopping (seed 004)",
        ("experiment=mnist_deep_ae",),
        ("loss_curves", "codes_tsne"),
    ),
    Experiment(
        "vae",
        "VAE 784-256-64-2x10 (seed 001)",
        ("experiment=mnist_vae",),
        ("samples", "interpolation"),
        # its MSE decoder's likelihood (a fixed-variance Gaussian) is no paper's number; the
        # binarised-MNIST likelihood is in the benchmark table (--benchmarks)
        evaluate=("metrics.likelihood=false",),
    ),
)

QUICK_TRAIN = (
    "data.source=sample",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=2",
)
QUICK_EVAL = (
    "metrics.iw_samples=10",
    "metrics.probe_train_images=1000",
    "metrics.noise_images=200",
    "figures.tsne_points=300",
    "projector_images=100",
)
#: the results page title's suffix for --quick runs (publish refuses those pages)
QUICK_TITLE = " (quick smoke run: bundled sample, tiny budgets)"
#: metrics shown in the results table when the evaluation has them
COLUMNS = (
    ("test/mse", "test MSE", "{:.5f}"),
    ("test/psnr", "PSNR (dB)", "{:.2f}"),
    ("test/ssim", "SSIM", "{:.3f}"),
    ("test/neg_elbo", "−ELBO (nats)", "{:.1f}"),
    ("test/iw_nll", "IW-NLL (nats)", "{:.1f}"),
    ("probe/linear_acc", "linear probe", "{:.3f}"),
)


#: the metric whose spread over seeds the tables show, the first the run has
SPREAD_KEYS = ("test/iw_nll", "test/bce", "test/psnr")
#: what :func:`run_experiment` writes beside a finished run: its command and its times
RECORD = "reproduce.json"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(args: Sequence[str], log_path: Path) -> tuple[float, float]:
    """Run a CLI command, its output into ``log_path``; return (wall, CPU) seconds of it (CPU:
    all its threads and processes), raise on failure."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    started, cpu = time.perf_counter(), _children_cpu_s()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode:
        tail = log_path.read_text().strip().splitlines()[-5:]
        raise RuntimeError(
            f"`{' '.join(args[:3])} ...` failed (see {log_path}):\n" + "\n".join(tail)
        )
    return time.perf_counter() - started, _children_cpu_s() - cpu


def _run_once(args: Sequence[str], folder: Path, log_path: Path, rerun: bool) -> dict[str, Any]:
    """Run ``args`` (whose results land in ``folder``) unless ``folder`` already holds a
    finished run of exactly this command; returns the command's record (times, ``reused``)."""
    record_path = folder / RECORD
    if not rerun and record_path.is_file() and (folder / "metrics.json").is_file():
        record = read_json(record_path)
        if record.get("command") == list(args):
            return {**record, "reused": True}
    record_path.unlink(missing_ok=True)
    wall, cpu = _run(args, log_path)
    record = {"command": list(args), "wall_s": wall, "cpu_s": cpu}
    write_text_atomic(record_path, json.dumps(record, indent=2) + "\n")
    return {**record, "reused": False}


def with_seed(exp: Experiment, seed: int, first: bool) -> Experiment:
    """``exp`` trained with ``seed``; the first seed keeps the name (the README's row)."""
    name = exp.name if first else f"{exp.name}-seed{seed}"
    return replace(exp, name=name, overrides=(*exp.overrides, f"seed={seed}"))


def seeded(experiments: Sequence[Experiment], seeds: Sequence[int]) -> list[Experiment]:
    """Every experiment once per seed (the first seed first; a comparison variant only with
    the first); unchanged without seeds."""
    if not seeds:
        return list(experiments)
    return [
        with_seed(e, s, i == 0)
        for e in experiments
        for i, s in enumerate(seeds if e.every_seed else seeds[:1])
    ]


def parse_seeds(text: str) -> list[int]:
    """``"42,1,2"`` -> ``[42, 1, 2]``; a bad list is one sentence."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise DataError(
            f"--seeds {text!r}: give integers separated by commas, e.g. 42,1,2"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise DataError(f"--seeds {text!r} repeats a seed; give distinct seeds")
    return seeds


def data_overrides(data_dir: Path | None, quick: bool) -> list[str]:
    if quick:
        return list(QUICK_TRAIN)
    data_dir = Path(data_dir or "data").resolve()
    if find_idx_files(data_dir, "MNIST"):
        return [f"data.data_dir={data_dir}", "data.source=idx"]
    # no files: torchvision's download, which fails with a clear message when offline
    return [f"data.data_dir={data_dir}", "data.source=download"]


def run_experiment(
    exp: Experiment, out: Path, data: list[str], quick: bool, rerun: bool = False
) -> dict[str, Any]:
    """``ae-train`` then ``ae-evaluate`` on its best checkpoint (each reused when already
    finished with the same command, unless ``rerun``); both metrics and both times."""
    run_dir, eval_dir = out / "runs" / exp.name, out / "eval" / exp.name
    train = _run_once(
        [
            "aelightning",
            *exp.overrides,
            *data,
            *(exp.quick if quick else ()),
            f"hydra.run.dir={run_dir}",
            "callbacks.rich_progress_bar=null",
        ],
        run_dir,
        out / "logs" / f"{exp.name}.train.log",
        rerun,
    )
    trained = read_json(run_dir / "metrics.json")
    ckpt = trained.get("best_checkpoint") or str(run_dir / "checkpoints" / "last.ckpt")
    evaluation = _run_once(
        [
            "aelightning.cli.evaluate",
            f"ckpt_path={ckpt}",
            f"hydra.run.dir={eval_dir}",
            *exp.evaluate,
            *(QUICK_EVAL if quick else ()),
        ],
        eval_dir,
        out / "logs" / f"{exp.name}.eval.log",
        rerun or not train["reused"],  # a retrained checkpoint is evaluated anew
    )
    reused = [what for what, r in (("training", train), ("evaluation", evaluation)) if r["reused"]]
    if reused:
        print(f"[reproduce] {exp.name}: reused the finished {' and '.join(reused)}", flush=True)
    return {
        "experiment": exp,
        "train": trained,
        "eval": read_json(eval_dir / "metrics.json"),
        "train_s": train["wall_s"],
        "train_cpu_s": train["cpu_s"],
        "eval_s": evaluation["wall_s"],
        "run_dir": run_dir,
        "eval_dir": eval_dir,
    }


def run_all(
    experiments: Sequence[Experiment],
    out: Path,
    data: list[str],
    quick: bool,
    rerun: bool = False,
    tag: str = "reproduce",
) -> list[dict[str, Any]]:
    """:func:`run_experiment` for each, in order, saying which one runs."""
    results = []
    for exp in experiments:
        print(f"[{tag}] {exp.name}: {exp.title}", flush=True)
        results.append(run_experiment(exp, out, data, quick, rerun))
    return results


def total_minutes(results: Sequence[dict[str, Any]]) -> float:
    """Wall time of the rows' training and evaluation (reused ones as first measured)."""
    return sum(r["train_s"] + r["eval_s"] for r in results) / 60


def _metric(result: dict[str, Any], key: str) -> float | None:
    for source in (result["eval"].get("metrics", {}), result["train"].get("metrics", {})):
        if key in source:
            return source[key]
    return None


def by_experiment(results: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Results grouped per experiment (its seeds together), the README's row first."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["experiment"].title, []).append(r)
    return list(groups.values())


def seed_of(result: dict[str, Any]) -> str:
    seeds = [o.split("=", 1)[1] for o in result["experiment"].overrides if o.startswith("seed=")]
    return seeds[-1] if seeds else str(result["train"].get("seed", "default"))


def spread_cell(
    group: Sequence[dict[str, Any]],
    fmt: str | None = None,
    spread_keys: Sequence[str] = SPREAD_KEYS,
) -> str:
    """``"20.91 / 21.28 / 20.89 (seeds 42 / 1 / 2; spread 0.39)"``: the headline metric (the
    first of ``spread_keys`` the run has) of every seed of one experiment; empty for a single
    run."""
    if len(group) < 2:
        return ""
    key = next((k for k in spread_keys if _metric(group[0], k) is not None), None)
    if key is None:
        return ""
    fmt = fmt or next((f for k, _, f in COLUMNS if k == key), "{:.4f}")
    values = [_metric(r, key) for r in group]
    known = [v for v in values if v is not None]
    shown = " / ".join("–" if v is None else fmt.format(v) for v in values)
    seeds = " / ".join(seed_of(r) for r in group)
    spread = fmt.format(max(known) - min(known))
    return f"{key.split('/')[-1]} {shown} (seeds {seeds}; spread {spread})"


def results_table(
    results: Sequence[dict[str, Any]],
    columns: Sequence[tuple[str, str, str]] = COLUMNS,
    spread_keys: Sequence[str] = SPREAD_KEYS,
) -> list[str]:
    """The markdown table of trained + evaluated experiments (those of ``columns`` any of them
    has): one row per experiment, its seeds' headline metric (the first of ``spread_keys``)
    in an ``over seeds`` column."""
    groups = by_experiment(results)
    columns = [c for c in columns if any(_metric(r, c[0]) is not None for r in results)]
    seeds = any(len(g) > 1 for g in groups)
    header = ["experiment", "data", *(c[1] for c in columns), "epochs", "train time"]
    header += ["over seeds"] if seeds else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        r = group[0]
        exp = r["experiment"]
        command = " ".join(o for o in exp.overrides if not o.startswith("seed=")) or "defaults"
        cells = [f"{exp.title}: `{command}`", _data_cell(r["train"].get("data", ""))]
        for key, _, fmt in columns:
            value = _metric(r, key)
            cells.append("" if value is None else fmt.format(value))
        cells += [str(r["train"].get("epochs", "")), f"{r['train']['seconds']:.0f} s"]
        cells += [spread_cell(group, spread_keys=spread_keys)] if seeds else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def results_markdown(results: list[dict[str, Any]], out: Path, quick: bool) -> str:
    lines = [
        "# Reproduced results" + (QUICK_TITLE if quick else ""),
        "",
        f"Made by `make reproduce{'-quick' if quick else ''}` on {machine_description()}; "
        f"training and evaluation took {total_minutes(results):.1f} min.",
        "",
        *results_table(results),
    ]
    lines += [
        "",
        "Each row is `ae-train <overrides>` then `ae-evaluate ckpt_path=<best checkpoint>`",
        f"(runs in `{_shown(out)}/runs/<name>/`, evaluations in `eval/<name>/`). Train time",
        "includes validation and the test pass. Linear probe: test accuracy of a logistic",
        "regression on the codes. The MSE VAE's likelihood is left out: under its fixed-variance",
        "Gaussian decoder it compares with no paper; the binarised-MNIST VAE likelihood and the",
        "Keras autoencoders are in the benchmark table (`make reproduce ARGS=--benchmarks`).",
        "",
    ]
    for r in (group[0] for group in by_experiment(results)):
        figures = [
            p
            for name in r["experiment"].figures
            for p in sorted((r["eval_dir"] / "figures").glob(f"{name}*.png"))[:1]
        ]
        if figures:
            lines.append(f"### {r['experiment'].title}")
            lines += [f"![{p.stem}]({p.relative_to(out)})" for p in figures]
            lines.append("")
    return "\n".join(lines)


BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")


def publish(
    out: Path,
    readme: Path,
    figures_dir: Path,
    page_name: str = "results.md",
    markers: tuple[str, str] = (BEGIN, END),
) -> int:
    """Put ``out/<page_name>`` (a full run's) into ``readme`` between ``markers``, its figures
    copied into ``figures_dir`` (a committed folder: ``outputs/`` is ignored).

    Returns the number of figures copied. The table is not edited by hand: what the README
    shows is what ``make reproduce`` wrote.
    """
    begin, end = markers
    results = out / page_name
    if not results.is_file():
        raise DataError(f"no {results}: run `make reproduce` first.")
    text = results.read_text()
    if QUICK_TITLE in text:
        raise DataError(f"{results} is from a --quick run; the README shows full results only.")
    page = readme.read_text()
    if page.count(begin) != 1 or page.count(end) != 1 or page.index(begin) > page.index(end):
        raise DataError(f"{readme} needs one '{begin}' line followed by one '{end}' line.")
    figures_dir.mkdir(parents=True, exist_ok=True)
    base = readme.parent.resolve()
    copied = 0

    def relink(match: re.Match[str]) -> str:
        nonlocal copied
        source = out / match.group(2)
        target = figures_dir / "_".join(Path(match.group(2)).parts[-3::2])  # <run>_<figure>
        shutil.copyfile(source, target)
        copied += 1
        return f"![{match.group(1)}]({target.resolve().relative_to(base).as_posix()})"

    body = _IMAGE.sub(relink, text.split("\n", 1)[1].strip())  # without the page title
    before, rest = page.split(begin, 1)
    after = rest.split(end, 1)[1]
    write_text_atomic(readme, f"{before}{begin}\n{body}\n{end}{after}")
    return copied


def _data_cell(description: str) -> str:
    """``MNIST from IDX files in '/x' (train 55,000 / ...)`` -> ``MNIST (train 55,000 / ...)``:
    the split sizes matter to a reader, the local paths (the folder, its cache) do not."""
    description = re.sub(r"(image folder) '[^']*'|, cache '[^']*'", r"\1", description)
    return re.sub(r" from [^']*'[^']*'| bundled real sample from \w+", "", description)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (as users typed it)."""
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bundled sample, tiny budgets")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding MNIST/raw/ IDX files (default: ./data)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default outputs/reproduce[-quick]")
    parser.add_argument("--only", default="", help="comma-separated experiment names")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="put the results (of this run, or of the last one with --publish-only) into "
        "README.md between its reproduce markers, figures into docs/figures/reproduce/",
    )
    parser.add_argument("--publish-only", action="store_true", help="publish without running")
    parser.add_argument(
        "--benchmarks",
        action="store_true",
        help="run the standard benchmarks instead (binarised-MNIST VAE likelihood, the Keras "
        "autoencoders; about 45 min a seed on 2 CPUs, 20 of them the k=5,000 IW-NLL) into "
        "outputs/benchmarks[-quick]/benchmarks.md; "
        "--publish puts their table between the README's benchmark markers",
    )
    parser.add_argument(
        "--anime-dir",
        type=Path,
        default=None,
        help="a folder of face images: also run the anime experiments (README section: "
        "Anime faces)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="with --anime-dir: also the 224-px VGG16 seed (GPU)"
    )
    parser.add_argument(
        "--seeds",
        default="",
        help="comma-separated seeds, e.g. 42,1,2: every experiment once per seed, the table "
        "shows the first seed's row and every seed's headline metric",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="train and evaluate anew even where a finished run of the same command exists",
    )
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.seeds = parse_seeds(args.seeds)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.benchmarks:
        return _benchmarks(args)
    from aelightning.cli import reproduce_anime  # it imports this module's helpers

    out = (
        args.out or Path("outputs") / ("reproduce-quick" if args.quick else "reproduce")
    ).resolve()
    if args.publish_only:
        anime = (out / reproduce_anime.PAGE).is_file()
        mnist = (out / "results.md").is_file() or not anime
        return _publish(out, args.readme, mnist=mnist, anime=anime)
    only = [name for name in args.only.split(",") if name]
    chosen = [e for e in EXPERIMENTS if not only or e.name in only]
    if only and not chosen and args.anime_dir is None:
        print(f"error: --only {args.only} names no experiment.", file=sys.stderr)
        return 1
    try:
        data = data_overrides(args.data_dir, args.quick) if chosen else []
        results = run_all(seeded(chosen, args.seeds), out, data, args.quick, args.rerun)
        anime_page = None
        if args.anime_dir is not None:
            anime_page = reproduce_anime.run_anime(
                args.anime_dir, out, args.quick, args.gpu, only, args.seeds, args.rerun
            )
    except (DataError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if chosen:
        text = results_markdown(results, out, args.quick)
        write_text_atomic(out / "results.md", text)
        print(text)
        print(f"\n[reproduce] wrote {out / 'results.md'}")
    if anime_page is not None:
        print(f"[reproduce] wrote {anime_page}")
    if not args.publish:
        return 0
    return _publish(out, args.readme, mnist=bool(chosen), anime=anime_page is not None)


def _benchmarks(args: argparse.Namespace) -> int:
    """``--benchmarks``: the standard protocols (:mod:`aelightning.cli.benchmarks`)."""
    from aelightning.cli import benchmarks

    default = "benchmarks-quick" if args.quick else "benchmarks"
    out = (args.out or Path("outputs") / default).resolve()
    if args.publish_only:
        try:
            benchmarks.publish_benchmarks(out, args.readme)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    try:  # --quick: the benchmarks' own tiny budgets on the bundled sample
        data = [] if args.quick else data_overrides(args.data_dir, quick=False)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    only = [n for n in args.only.split(",") if n]
    return benchmarks.run_benchmarks(
        out, data, args.quick, only, args.publish, args.readme, args.seeds, args.rerun
    )


def _publish(out: Path, readme: Path, mnist: bool = True, anime: bool = False) -> int:
    from aelightning.cli import reproduce_anime

    pages = [("results.md", (BEGIN, END))] if mnist else []
    if anime:
        pages.append((reproduce_anime.PAGE, (reproduce_anime.BEGIN, reproduce_anime.END)))
    for page, markers in pages:
        try:
            copied = publish(
                out, readme, readme.parent / "docs" / "figures" / "reproduce", page, markers
            )
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"[reproduce] {page} and {copied} figure(s) are in {readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

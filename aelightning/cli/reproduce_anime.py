"""The anime-faces part of ``make reproduce`` (``--anime-dir DIR``): train, evaluate, figures.

Each experiment is ``ae-train`` + ``ae-evaluate`` exactly as for MNIST (:mod:`.reproduce`), on
any folder of images. The SegNet-VGG13 recipe runs twice (code activation none and sigmoid, the
seed's comparison); the 224-px VGG16 seed runs only with ``--gpu``. Afterwards the two VGG13
checkpoints give the bottleneck comparison and the linear-code one the decoder fed random codes.
The page goes to ``<out>/anime.md`` and, with ``--publish``, into the README between the anime
markers.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aelightning.cli.reproduce import (
    QUICK_TITLE,
    Experiment,
    _shown,
    by_experiment,
    machine_description,
    results_table,
    run_all,
    seeded,
    total_minutes,
)
from aelightning.errors import DataError

VGG13_NONE = Experiment(
    "anime_vgg13_none",
    "SegNet-VGG13, 64 px, linear code (seed 003)",
    ("experiment=anime_vgg13_64",),
    ("reconstructions", "loss_steps", "learning_rate"),
)
VGG13_SIGMOID = Experiment(
    "anime_vgg13_sigmoid",
    "SegNet-VGG13, 64 px, sigmoid code (seed 003)",
    ("experiment=anime_vgg13_64", "net.bottleneck_activation=sigmoid"),
    every_seed=False,  # the seed's comparison, not a recipe: one run beside the first seed's
)
ANIME_EXPERIMENTS: tuple[Experiment, ...] = (
    VGG13_NONE,
    VGG13_SIGMOID,
    Experiment(
        "anime_conv",
        "Conv AE, 64 px, 128-number code",
        ("experiment=anime_conv_64",),
        ("reconstructions",),
    ),
    Experiment(
        "anime_vae",
        "Conv VAE, 64 px, 64-dim code",
        ("experiment=anime_vae_64",),
        ("samples", "interpolation"),
    ),
)
GPU_EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        "anime_segnet_vgg16",
        "SegNet-VGG16, 224 px, stretch (seed 003, GPU)",
        ("experiment=anime_segnet_vgg16", "trainer=gpu"),
        ("reconstructions", "learning_rate"),
    ),
)
QUICK_ANIME = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
)
BEGIN, END = "<!-- anime:begin -->", "<!-- anime:end -->"
PAGE = "anime.md"
#: test images in the comparison figures
FIGURE_IMAGES = 8


def anime_experiments(gpu: bool, only: Sequence[str] = ()) -> list[Experiment]:
    """The anime experiments to run (the GPU one only with ``gpu``), filtered by ``only``."""
    chosen = [*ANIME_EXPERIMENTS, *(GPU_EXPERIMENTS if gpu else ())]
    return [e for e in chosen if not only or e.name in only]


def data_overrides(anime_dir: Path, out: Path, quick: bool) -> list[str]:
    """The folder, and a decode cache inside ``out`` (decoded once, shared by every run)."""
    folder = Path(anime_dir).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"--anime-dir '{anime_dir}' is not a folder; pass a folder of images.")
    return [
        f"data.root={folder}",
        f"data.cache_dir={out / 'cache'}",
        "data.progress=false",
        *(QUICK_ANIME if quick else ()),
    ]


def comparison_figures(results: Sequence[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """Bottleneck comparison (both VGG13 runs) and decoder_random_codes (the linear-code run)
    on the same test images; returns ``{figure name: path}`` plus the comparison's numbers."""
    from aelightning.checkpointing.checkpoint import load_model_from_checkpoint
    from aelightning.evaluation import plots
    from aelightning.evaluation.decoder_figures import (
        bottleneck_comparison,
        decoder_random_codes,
    )

    by_name = {r["experiment"].name: r for r in results}
    if VGG13_NONE.name not in by_name:
        return {}
    models = {
        name.rsplit("_", 1)[1]: load_model_from_checkpoint(_checkpoint(by_name[name]))
        for name in (VGG13_NONE.name, VGG13_SIGMOID.name)
        if name in by_name
    }
    images = _test_images(by_name[VGG13_NONE.name]["run_dir"])
    sink = plots.FigureSink(folder)
    out: dict[str, Any] = {}
    if len(models) == 2:
        fig, out["bottleneck_stats"] = bottleneck_comparison(models, images[:FIGURE_IMAGES])
        sink.add("bottleneck_none_vs_sigmoid", fig)
    sink.add("decoder_random_codes", decoder_random_codes(models["none"], images, FIGURE_IMAGES))
    out.update(sink.paths)
    return out


def _checkpoint(result: dict[str, Any]) -> str:
    return result["train"].get("best_checkpoint") or str(
        result["run_dir"] / "checkpoints" / "last.ckpt"
    )


def _test_images(run_dir: Path) -> Any:
    """The run's test split, rebuilt from its saved config (the same folder and split)."""
    from omegaconf import OmegaConf

    from aelightning.builders import build_datamodule

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    cfg.data.progress = False
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.test_images[:256]


def anime_markdown(
    results: Sequence[dict[str, Any]],
    extras: dict[str, Any],
    out: Path,
    quick: bool,
    speed: dict[str, float],
) -> str:
    """The README's anime section: the table, what the faces are, and the figures."""
    lines = [
        "# Anime faces" + (QUICK_TITLE if quick else ""),
        "",
        f'Made by `make reproduce ARGS="--anime-dir DIR"` on {machine_description()}; '
        f"training and evaluation took {total_minutes(results):.1f} min.",
        "",
        *results_table(results),
    ]
    lines += [
        "",
        "Each row is `ae-train <overrides> data.root=DIR` then `ae-evaluate` on its best",
        f"checkpoint (runs in `{_shown(out)}/runs/<name>/`). Any folder of images works as DIR.",
        "Train time includes validation and the test pass.",
        "",
        f"Before the first step: the first start decodes the {speed['files']:,} files into the "
        f"cache at {speed['decode_images_per_s']:,.0f} images/s ({speed['decode_s']:.1f} s, all "
        f"CPUs); every later start loads that cache in {speed['load_s']:.2f} s.",
        "",
    ]
    stats = extras.get("bottleneck_stats")
    if stats:
        lines += ["### Bottleneck activation: none vs sigmoid", ""]
        lines += [
            f"- {label}: mean brightness {s['brightness']:.3f}"
            + (f", PSNR {s['psnr']:.2f} dB" if "psnr" in s else "")
            for label, s in stats.items()
        ]
        lines += ["", f"![bottleneck]({extras['bottleneck_none_vs_sigmoid'].relative_to(out)})"]
        lines.append("")
    if "decoder_random_codes" in extras:
        lines += [
            "### The decoder alone, fed random codes",
            "",
            "Codes drawn per channel from the mean and spread of real test codes.",
            "",
            f"![decoder_random_codes]({extras['decoder_random_codes'].relative_to(out)})",
            "",
        ]
    for r in (group[0] for group in by_experiment(results)):
        figures = [
            p
            for name in r["experiment"].figures
            for p in sorted((r["eval_dir"] / "figures").glob(f"{name}*.png"))[:1]
        ]
        grids = sorted((r["run_dir"] / "figures").glob("reconstructions_epoch*.png"))
        figures += grids[:1] + grids[-1:] if len(grids) > 1 else grids
        if figures:
            lines.append(f"### {r['experiment'].title}")
            lines += [f"![{p.stem}]({p.relative_to(out)})" for p in figures]
            lines.append("")
    return "\n".join(lines)


def run_anime(
    anime_dir: Path,
    out: Path,
    quick: bool,
    gpu: bool,
    only: Sequence[str] = (),
    seeds: Sequence[int] = (),
    rerun: bool = False,
) -> Path | None:
    """Measure the folder's decode and cache load, train and evaluate the anime experiments
    (once per seed), draw the comparisons, write ``out/anime.md``.

    Returns the page's path, or None when ``only`` selects no anime experiment.
    """
    chosen = anime_experiments(gpu, only)
    if not chosen:
        return None
    data = data_overrides(anime_dir, out, quick)
    speed = data_speed(Path(anime_dir), out / "cache-speed")
    results = run_all(seeded(chosen, seeds), out, data, quick, rerun)
    firsts = [group[0] for group in by_experiment(results)]
    extras = comparison_figures(firsts, out / "anime" / "figures")
    page = out / PAGE
    page.write_text(anime_markdown(results, extras, out, quick, speed))
    return page


def data_speed(folder: Path, cache: Path) -> dict[str, float]:
    """What a user waits for before the first step: the first decode of ``folder`` into an
    empty cache (images/s, all CPUs) and a later start's load of that cache (seconds)."""
    from aelightning.data.images import ImageFolderDataModule

    def module() -> ImageFolderDataModule:
        return ImageFolderDataModule(folder, image_size=64, cache_dir=cache, progress=False)

    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    first = module()
    first.prepare_data()
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    again = module()
    again.prepare_data()
    again.setup("fit")
    load_s = time.perf_counter() - started
    images = sum(again.split_sizes.values()) + len(again.duplicates)
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "files": images,
        "decode_s": decode_s,
        "decode_images_per_s": images / decode_s,
        "load_s": load_s,
    }

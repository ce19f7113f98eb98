"""Read and write IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.

We parse the format ourselves instead of going through torchvision so that every way a file can
be wrong (not IDX, wrong element type, cut short, trailing bytes, broken gzip) becomes one clear
:class:`~aelightning.errors.DataError` naming the file, and so that reading streams straight into
one preallocated array (no Python loops, no second copy of the payload).

Format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian int32 per dimension, then the payload in C order.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from aelightning.errors import DataError

#: Role -> base file name; each file may exist raw or with a ``.gz`` suffix.
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE = 0x08
_TYPE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_CHUNK = 1 << 20

# Alternative folder names under data_dir, e.g. Debian's /usr/share/datasets/fashion-mnist.
_FOLDER_ALIASES: dict[str, tuple[str, ...]] = {
    "MNIST": ("mnist",),
    "FashionMNIST": ("fashion-mnist", "fashion_mnist"),
}


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _read_into(f: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` from ``f``; returns the number of bytes read (less only at end of file)."""
    filled = 0
    while filled < len(buf):
        n = f.readinto(buf[filled:])  # type: ignore[attr-defined]
        if not n:
            break
        filled += n
    return filled


def _count_rest(f: BinaryIO) -> int:
    total = 0
    while chunk := f.read(_CHUNK):
        total += len(chunk)
    return total


def _parse(f: BinaryIO, path: Path) -> torch.Tensor:
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(
            f"'{path}' is not an IDX file (its first bytes are {head.hex() or 'missing'}, an IDX "
            "file starts with 0000); replace it with the original MNIST-format file"
        )
    type_code, ndim = head[2], head[3]
    if type_code != _UBYTE:
        name = _TYPE_NAMES.get(type_code, "unknown type")
        raise DataError(
            f"'{path}' holds IDX type 0x{type_code:02x} ({name}) but only 0x08 (unsigned byte) "
            "images/labels are supported; use the original MNIST-format file"
        )
    if not 1 <= ndim <= 4:
        raise DataError(f"'{path}' declares {ndim} dimensions; an IDX image/label file has 1 to 4")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"'{path}' is truncated inside its header; download the file again")
    dims = struct.unpack(f">{ndim}i", raw_dims)
    if any(d < 0 for d in dims):
        raise DataError(f"'{path}' declares negative dimensions {dims}; the file is corrupt")
    expected = math.prod(dims)
    arr = np.empty(expected, dtype=np.uint8)
    got = _read_into(f, memoryview(arr))
    if got < expected:
        raise DataError(
            f"'{path}' is truncated: its header {tuple(dims)} needs {expected} payload bytes but "
            f"only {got} are present; download the file again"
        )
    extra = _count_rest(f)
    if extra:
        raise DataError(
            f"'{path}' has trailing bytes: its header {tuple(dims)} needs {expected} payload bytes "
            f"but {expected + extra} are present; the file is corrupt or not what it claims to be"
        )
    return torch.from_numpy(arr.reshape(dims))


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read one IDX file (raw or gzip, detected by its magic bytes) into a uint8 tensor."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file '{path}' does not exist")
    compressed = False
    try:
        compressed = _is_gzip(path)
        if compressed:
            with gzip.open(path, "rb") as f:
                return _parse(f, path)  # type: ignore[arg-type]
        with open(path, "rb") as f:
            return _parse(f, path)
    except (OSError, EOFError, zlib.error) as e:
        what = "its gzip stream is corrupt or cut short" if compressed else "it is unreadable"
        kind = "zlib error" if isinstance(e, zlib.error) else type(e).__name__
        raise DataError(
            f"'{path}' could not be read ({kind}: {e}): {what}; download the file again"
        ) from e


def write_idx(path: str | os.PathLike[str], tensor: torch.Tensor, compresslevel: int = 6) -> Path:
    """Write a uint8 tensor (1 to 4 dims) as IDX; gzip-compressed when ``path`` ends in ``.gz``.

    Used by tests (IDX sets written from the real bundled sample) and to export data. Level 6
    compresses MNIST almost as well as gzip's default 9 in a fraction of the time.
    """
    path = Path(path)
    if tensor.dtype != torch.uint8:
        raise DataError(
            f"write_idx('{path}') needs a uint8 tensor, got {tensor.dtype}; "
            "convert it first, e.g. (x * 255).round().to(torch.uint8)"
        )
    if not 1 <= tensor.dim() <= 4:
        raise DataError(f"write_idx('{path}') needs 1 to 4 dimensions, got {tensor.dim()}")
    header = bytes([0, 0, _UBYTE, tensor.dim()]) + struct.pack(f">{tensor.dim()}i", *tensor.shape)
    payload = tensor.detach().cpu().contiguous().numpy().tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        # mtime=0 makes the output byte-identical for identical data.
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=compresslevel, mtime=0) as f,
        ):
            f.write(header)
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(header)
            f.write(payload)
    return path


def idx_search_dirs(data_dir: str | os.PathLike[str], folder_name: str) -> list[Path]:
    """Folders :func:`find_idx_files` looks in, most specific first."""
    root = Path(data_dir).expanduser()
    dirs: list[Path] = []
    for name in (folder_name, *_FOLDER_ALIASES.get(folder_name, ())):
        dirs += [root / name / "raw", root / name]
    dirs.append(root)
    return dirs


def find_idx_files(data_dir: str | os.PathLike[str], folder_name: str) -> dict[str, Path] | None:
    """Find the four IDX files under ``data_dir`` (torchvision or flat layout), else ``None``.

    Looks in ``{data_dir}/{folder_name}/raw`` (torchvision), ``{data_dir}/{folder_name}`` and
    ``data_dir`` itself (Debian's flat ``/usr/share/datasets/fashion-mnist``); lower-case
    aliases such as ``fashion-mnist`` are also tried. Within a folder a raw file is preferred
    over its ``.gz`` (no decompression).
    """
    for folder in idx_search_dirs(data_dir, folder_name):
        if not folder.is_dir():
            continue
        found: dict[str, Path] = {}
        for role, base in IDX_FILES.items():
            for candidate in (folder / base, folder / f"{base}.gz"):
                if candidate.is_file():
                    found[role] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def load_idx_dataset(
    files: Mapping[str, str | os.PathLike[str]],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load the four IDX files into ``(train_x, train_y, test_x, test_y)``.

    Images come back as uint8 ``[N, 1, H, W]``, labels as int64 ``[N]`` in 0..9; a file of
    the wrong kind, a count mismatch or an out-of-range label is a :class:`DataError`.
    """
    out: list[torch.Tensor] = []
    for split in ("train", "test"):
        img_path, lbl_path = Path(files[f"{split}_images"]), Path(files[f"{split}_labels"])
        images, labels = read_idx(img_path), read_idx(lbl_path)
        if images.dim() != 3:
            raise DataError(
                f"'{img_path}' has shape {tuple(images.shape)} but an image file must be "
                "[N, H, W]; check that the image and label files are not swapped"
            )
        if labels.dim() != 1:
            raise DataError(
                f"'{lbl_path}' has shape {tuple(labels.shape)} but a label file must be [N]; "
                "check that the image and label files are not swapped"
            )
        if len(labels) != len(images):
            raise DataError(
                f"'{img_path}' holds {len(images)} images but '{lbl_path}' holds {len(labels)} "
                "labels; the two files must come from the same release"
            )
        if len(labels) and int(labels.max()) > 9:
            raise DataError(
                f"'{lbl_path}' contains label {int(labels.max())} but labels must be 0..9; "
                "the file is corrupt or not a MNIST-style label file"
            )
        out += [images.unsqueeze(1), labels.long()]
    train_x, train_y, test_x, test_y = out
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(
            f"train images are {tuple(train_x.shape[2:])} but test images are "
            f"{tuple(test_x.shape[2:])} in '{files['train_images']}' / '{files['test_images']}'"
        )
    return train_x, train_y, test_x, test_y

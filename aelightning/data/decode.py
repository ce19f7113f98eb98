"""Decode image files into fixed-size uint8 RGB arrays, in parallel, straight into a ``.npy``.

Only numpy, PIL and rich are imported here (no torch), so the decode workers stay small. Each
worker writes its rows into the memory-mapped output
file itself, so decoded pixels never travel back through a pipe; it returns only an
:class:`Outcome` per file: the SHA-256 of the file's bytes (what the split and the duplicate
check are based on; the bytes are read once for both) or the error.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from aelightning.runtime.cpus import available_cpus

#: how an image becomes square: crop the centre square, or squeeze the whole image
RESIZE_MODES = ("center_crop", "stretch")
#: bumped whenever decoding changes, so that caches written by an older version are not reused
DECODE_VERSION = 1
#: below this many files one process decodes (starting a pool costs more than it saves)
MIN_FILES_FOR_POOL = 256
#: JPEGs are first reduced in the DCT domain to at least this multiple of the target size, then
#: resampled: nearly the speed of decoding at the target size, with resampling's quality
DRAFT_GAP = 2

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_HIGH_BIT_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: alpha composited on white, 16-bit scaled (not clipped) to 8.

    PIL's own ``convert("RGB")`` clips 16-bit grey at 255 (a white image) and drops alpha
    (showing whatever colour transparent pixels happen to hold).
    """
    if img.mode in _HIGH_BIT_DEPTH:  # 16-bit grey (PNG): keep the top 8 bits
        grey = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        img = Image.fromarray((grey >> 8).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img if img.mode == "RGB" else img.convert("RGB")


def crop_box(width: int, height: int, resize: str) -> tuple[int, int, int, int]:
    """The source region that becomes the square output: the centre square, or everything."""
    if resize == "stretch":
        return (0, 0, width, height)
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


class Outcome(NamedTuple):
    """What decoding one file gave: the hex SHA-256 of its bytes, or why it is not an image."""

    digest: str | None
    error: str | None


def decode_image(path: str | os.PathLike | io.BytesIO, image_size: int, resize: str) -> np.ndarray:
    """One file as a ``[3, S, S]`` uint8 RGB array; raises whatever PIL raises on a bad file."""
    with Image.open(path) as img:
        img.draft("RGB", (DRAFT_GAP * image_size, DRAFT_GAP * image_size))  # JPEG only
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        rgb = to_rgb(img)
        rgb.load()  # a truncated file fails here, inside the ``with``
    out = rgb.resize(
        (image_size, image_size), Image.Resampling.BICUBIC, box=crop_box(*rgb.size, resize)
    )
    if orientation in _TRANSPOSE:  # the output is square, so rotating it last is equivalent
        out = out.transpose(_TRANSPOSE[orientation])
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def decode_chunk(
    paths: Sequence[str], rows: Sequence[int], out_path: str, image_size: int, resize: str
) -> list[Outcome]:
    """Decode ``paths`` into rows ``rows`` of the ``.npy`` at ``out_path``; one outcome per file.

    A good file gives its digest; a bad one the error ``"<ExceptionType>: <message>"``.
    """
    out = np.load(out_path, mmap_mode="r+")
    outcomes: list[Outcome] = []
    try:
        for path, row in zip(paths, rows, strict=True):
            try:
                data = Path(path).read_bytes()
                out[row] = decode_image(io.BytesIO(data), image_size, resize)
                outcomes.append(Outcome(hashlib.sha256(data).hexdigest(), None))
            except Exception as e:  # any unreadable file is reported, never fatal
                outcomes.append(Outcome(None, f"{type(e).__name__}: {e}".strip().splitlines()[0]))
        out.flush()
    finally:
        del out
    return outcomes


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux: workers start in milliseconds, without re-importing the caller's
    ``__main__`` (for ``ae-train`` that is torch and Lightning, seconds per worker under ``spawn``
    or ``forkserver``). The workers run only PIL and numpy, and the pool is started before the
    progress bar's thread. Elsewhere ``spawn`` (forking is unsafe on macOS, absent on Windows).
    """
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with an images/s rate; yields ``advance(n)``."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not enabled) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} img/s", style="progress.data.speed")


def decode_files(
    paths: Sequence[str],
    rows: Sequence[int],
    out_path: str | Path,
    image_size: int,
    resize: str,
    num_workers: int | None = None,
    progress: bool = True,
) -> list[Outcome]:
    """Decode every file of ``paths`` into its row of ``out_path`` (an existing ``.npy``).

    Args:
        num_workers: decode processes; ``None`` = all available CPUs, ``0`` = this process.
        progress: show a progress bar.

    Returns:
        one :class:`Outcome` per file, in the order of ``paths``.
    """
    n, out_path = len(paths), str(out_path)
    workers = min(available_cpus() if num_workers is None else num_workers, n)
    use_pool = workers > 1 and n >= MIN_FILES_FOR_POOL
    description = f"Decoding {n:,} images ({image_size}x{image_size}"
    description += f", {workers} processes)" if use_pool else ")"
    if not use_pool:
        outcomes: list[Outcome] = []
        with progress_bar(n, description, progress) as advance:
            for a in range(0, n, 64):
                part = decode_chunk(
                    paths[a : a + 64], rows[a : a + 64], out_path, image_size, resize
                )
                outcomes += part
                advance(len(part))
        return outcomes
    # Small chunks keep the progress bar moving and the cores evenly loaded; 256 caps the cost of
    # one straggling chunk at the end.
    size = max(8, min(256, math.ceil(n / (workers * 8))))
    results: list[Outcome] = [Outcome(None, None)] * n
    with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
        futures = {
            pool.submit(
                decode_chunk, paths[a : a + size], rows[a : a + size], out_path, image_size, resize
            ): a
            for a in range(0, n, size)
        }
        with progress_bar(n, description, progress) as advance:
            for future in as_completed(futures):
                part = future.result()
                a = futures[future]
                results[a : a + len(part)] = part
                advance(len(part))
    return results

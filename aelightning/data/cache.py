"""A folder of images decoded once into a ``.npy`` that later runs memory-map in milliseconds.

The cache is keyed by the file list (relative paths, sizes, mtimes), the image size, the resize
mode and the cache version: a second start with the same files loads it; any change writes a
new one (reusing the rows of files that did not change, so adding images decodes only those) and
removes the old one. Files are written under a temporary name and renamed into place, so a
crashed or concurrent build never leaves a half-written cache that a later run would trust.

Each image's split position in [0, 1) comes from the SHA-256 of its file's bytes, so exact copies
under other names always share a split; only the first path of each content gets a row (the
others are listed as duplicates in the index). Rows are sorted by split position, so every split is
a contiguous slice: a view into the memory map, never a copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aelightning.data.decode import DECODE_VERSION, decode_files
from aelightning.errors import DataError

log = logging.getLogger(__name__)

#: the decoder's version and the index format's (3: content digests, duplicates, keyed split)
CACHE_VERSION = f"{DECODE_VERSION}.3"
#: BLAKE2b personalisation of the split position (changing it reshuffles every split)
SPLIT_KEY = b"aelightning-spl"
#: rows copied per step when compacting or reusing rows (bounded memory at any image size)
_COPY_ROWS = 1024


@dataclass(frozen=True)
class FileStat:
    """One image file as the cache key sees it."""

    relpath: str  # POSIX path relative to the image folder
    size: int
    mtime_ns: int

    def as_row(self) -> list:
        return [self.relpath, self.size, self.mtime_ns]


@dataclass
class DecodedImages:
    """Decoded images, rows sorted by split position, and the files that could not be decoded."""

    images: np.ndarray  # uint8 [N, 3, S, S]; a copy-on-write memory map when cached
    relpaths: list[str]  # file of each row
    positions: np.ndarray  # float64 [N], ascending: split position of each row
    duplicates: list[tuple[str, str]]  # (file, the file kept in its place): same bytes, left out
    skipped: list[tuple[str, str]]  # (relpath, error) of every file that is not a usable image
    cache_path: Path | None  # the .npy, or None when not cached
    decoded: int  # files decoded now (0 on a cache hit)
    seconds: float  # time spent decoding now


def split_position(digest: str) -> float:
    """Where an image falls in [0, 1) for splitting, from the hex SHA-256 of its file's bytes.

    The content decides, not the name: copies under other names share a split, and the position
    is the same on every run, machine and Python (``hash()`` is salted per process). The position
    is a keyed BLAKE2b of that digest, not the digest's own leading bits: a folder's SHA-256s can
    be skewed on purpose (the public anime-face copy has none below 0x4000..., which would leave a
    5 % split empty), a hash keyed for this use cannot be skewed without targeting it.
    """
    keyed = hashlib.blake2b(bytes.fromhex(digest), digest_size=8, person=SPLIT_KEY).digest()
    return int.from_bytes(keyed, "big") / 2.0**64


class _BuildState:
    """Per file (in path order) while building: digest, error, and whether its row holds
    pixels (a file known from the previous cache only as a copy has none)."""

    def __init__(self, n: int) -> None:
        self.digests: list[str | None] = [None] * n
        self.errors: list[str | None] = [None] * n
        self.has_pixels = [False] * n

    def dedupe(self, order: Sequence[FileStat]) -> tuple[list[int], list[tuple[int, int]]]:
        """The files kept (first path of each content) and ``(copy, kept)`` pairs for the rest."""
        first: dict[str, int] = {}
        copies = []
        for i in range(len(order)):  # path order: the first path of a content is kept
            digest = self.digests[i]
            if self.errors[i] is not None or digest is None:
                continue
            if digest in first:
                copies.append((i, first[digest]))
            else:
                first[digest] = i
        return list(first.values()), copies


def scan_folder(root: Path, extensions: Sequence[str]) -> list[FileStat]:
    """Image files under ``root`` (recursive) with one of ``extensions``, sorted by path.

    Hidden files and folders (``.name``: editor/OS leftovers such as macOS ``._x.jpg``) are
    skipped; symlinked files are followed, symlinked folders are not (no loops). ``os.scandir``
    with string paths: ~20x faster than ``pathlib`` for 60k files.
    """
    suffixes = tuple("." + e.lower().lstrip(".") for e in extensions)
    found: list[FileStat] = []
    pending = [(str(root), "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((entry.path, rel + "/"))
                elif entry.name.lower().endswith(suffixes):
                    try:
                        st = entry.stat()
                    except OSError:  # a dangling symlink: listed, so that decoding reports it
                        found.append(FileStat(rel, -1, 0))
                        continue
                    if stat.S_ISREG(st.st_mode):
                        found.append(FileStat(rel, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.relpath)
    return found


def cache_key(files: Sequence[FileStat], image_size: int, resize: str) -> str:
    """SHA-256 over everything that decides the cache's content."""
    payload = json.dumps([CACHE_VERSION, image_size, resize, [f.as_row() for f in files]])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ImageCache:
    """Decode the files of one folder at one size, through an on-disk cache (or none).

    Args:
        root: the image folder (read only, never written).
        cache_dir: where the ``.npy`` + ``.json`` pairs live; ``None`` decodes into a temporary
            folder and keeps the result in RAM.
        image_size, resize: output size and resize mode (see :mod:`aelightning.data.decode`).
        num_workers: decode processes (``None`` = all CPUs).
        progress: show a progress bar while decoding.
    """

    def __init__(
        self,
        root: Path,
        cache_dir: Path | None,
        image_size: int,
        resize: str,
        num_workers: int | None = None,
        progress: bool = True,
    ) -> None:
        self.root = root
        self.cache_dir = cache_dir
        self.image_size = image_size
        self.resize = resize
        self.num_workers = num_workers
        self.progress = progress

    # -- names ---------------------------------------------------------------------------------
    @property
    def family(self) -> str:
        """Name prefix shared by every cache of this folder at this size and resize mode."""
        resolved = str(self.root.resolve())
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.root.resolve().name)[:40] or "images"
        digest = hashlib.sha256(resolved.encode("utf-8")).hexdigest()[:8]
        return f"{name}-{digest}-{self.image_size}px-{self.resize}"

    def paths(self, key: str) -> tuple[Path, Path]:
        """``(images .npy, index .json)`` of the cache for ``key``."""
        assert self.cache_dir is not None
        stem = f"{self.family}-{key[:16]}"
        return self.cache_dir / f"{stem}.npy", self.cache_dir / f"{stem}.json"

    # -- public --------------------------------------------------------------------------------
    def is_cached(self, files: Sequence[FileStat]) -> bool:
        """Whether a complete cache for exactly these files exists."""
        if self.cache_dir is None:
            return False
        npy, index = self.paths(cache_key(files, self.image_size, self.resize))
        return npy.is_file() and index.is_file()

    def get(self, files: Sequence[FileStat]) -> DecodedImages:
        """Load the cache for ``files``, building it first when there is none (or it is broken)."""
        key = cache_key(files, self.image_size, self.resize)
        if self.cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="aelightning-decode-") as tmp:
                built = self._build(files, Path(tmp), key, final=None)
                built.images = np.array(built.images)  # into RAM before the folder goes
                return built
        loaded = self._load(key)
        if loaded is not None:
            return loaded
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            return self._build(files, self.cache_dir, key, final=self.paths(key))
        except OSError as e:
            raise DataError(
                f"cannot write the image cache in data.cache_dir '{self.cache_dir}' ({e}); free "
                "space there, point data.cache_dir at another folder, or set data.cache_dir=null"
            ) from e

    # -- loading -------------------------------------------------------------------------------
    def _read_index(self, path: Path) -> dict | None:
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("version") != CACHE_VERSION:
            return None
        return index

    def _load(self, key: str) -> DecodedImages | None:
        npy, index_path = self.paths(key)
        if not index_path.is_file():
            return None
        index = self._read_index(index_path)
        try:
            images = np.load(npy, mmap_mode="c")
        except (OSError, ValueError) as e:
            log.warning("Image cache '%s' is unreadable (%s); rebuilding it", npy, e)
            return None
        shape = (len(index["files"]), 3, self.image_size, self.image_size) if index else None
        if index is None or index.get("key") != key or images.shape != shape:
            log.warning("Image cache '%s' does not match its index; rebuilding it", npy)
            return None
        return DecodedImages(
            images=images,
            relpaths=[row[0] for row in index["files"]],
            positions=np.array([split_position(row[3]) for row in index["files"]]),
            duplicates=[(row[0], row[4]) for row in index["duplicates"]],
            skipped=[(row[0], row[3]) for row in index["skipped"]],
            cache_path=npy,
            decoded=0,
            seconds=0.0,
        )

    def _previous(self, key: str) -> tuple[dict, Path] | None:
        """The newest other cache of this folder at this size: its rows can be reused."""
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return None
        candidates = []
        for path in self.cache_dir.glob(f"{glob_escape(self.family)}-*.json"):
            with contextlib.suppress(OSError):  # removed meanwhile by another run
                candidates.append((path.stat().st_mtime_ns, path))
        for _, index_path in sorted(candidates, reverse=True):
            if index_path == self.paths(key)[1]:
                continue
            index = self._read_index(index_path)
            npy = index_path.with_suffix(".npy")
            if index is not None and npy.is_file():
                return index, npy
        return None

    # -- building ------------------------------------------------------------------------------
    def _build(
        self, files: Sequence[FileStat], folder: Path, key: str, final: tuple[Path, Path] | None
    ) -> DecodedImages:
        """Decode ``files`` into ``folder``; with ``final``, commit as the cache of ``key``."""
        started = time.perf_counter()
        order = sorted(files, key=lambda f: f.relpath)
        s = self.image_size
        tag = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = folder / f"{self.family}-{key[:16]}{tag}.npy"
        temporaries = [tmp]
        try:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(len(order), 3, s, s)
            )
            state = _BuildState(len(order))
            todo = self._reuse(order, out, state, key)
            out.flush()
            del out
            decoded = self._decode(order, todo, tmp, state)
            while True:  # a file known only as a copy may now be the kept one: decode it then
                kept, copies = state.dedupe(order)
                missing = [i for i in kept if not state.has_pixels[i]]
                if not missing:
                    break
                decoded += self._decode(order, missing, tmp, state)
            seconds = time.perf_counter() - started
            rows = sorted(kept, key=lambda i: (split_position(state.digests[i]), order[i].relpath))
            skipped = [(order[i], e) for i, e in enumerate(state.errors) if e is not None]
            result = tmp
            if rows and rows != list(range(len(order))):
                result = folder / f"{self.family}-{key[:16]}{tag}-rows.npy"
                temporaries.append(result)
                _copy_rows(tmp, rows, result)
            if decoded:
                log.info(
                    "Data: decoded %d images in %.1f s (%.0f images/s)",
                    decoded,
                    seconds,
                    decoded / max(seconds, 1e-9),
                )
            if final is not None and rows:
                index = {
                    "version": CACHE_VERSION,
                    "key": key,
                    "root": str(self.root.resolve()),
                    "image_size": s,
                    "resize": self.resize,
                    "files": [[*order[i].as_row(), state.digests[i]] for i in rows],
                    "duplicates": [
                        [*order[i].as_row(), state.digests[i], order[k].relpath] for i, k in copies
                    ],
                    "skipped": [[*f.as_row(), e] for f, e in skipped],
                    "decode_seconds": round(seconds, 3),
                }
                self._commit(result, index, final)
                result = final[0]
            return DecodedImages(
                images=np.load(result, mmap_mode="c") if rows else np.empty((0, 3, s, s), np.uint8),
                relpaths=[order[i].relpath for i in rows],
                positions=np.array([split_position(state.digests[i]) for i in rows]),
                duplicates=[(order[i].relpath, order[k].relpath) for i, k in copies],
                skipped=[(f.relpath, e) for f, e in skipped],
                cache_path=final[0] if final is not None and rows else None,
                decoded=decoded,
                seconds=seconds,
            )
        finally:
            for path in temporaries:
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)

    def _decode(
        self, order: Sequence[FileStat], todo: Sequence[int], out: Path, state: _BuildState
    ) -> int:
        """Decode rows ``todo`` of ``out``, recording each file's digest or error."""
        if not todo:
            return 0
        outcomes = decode_files(
            [str(self.root / order[i].relpath) for i in todo],
            list(todo),
            out,
            self.image_size,
            self.resize,
            num_workers=self.num_workers,
            progress=self.progress,
        )
        for i, outcome in zip(todo, outcomes, strict=True):
            state.digests[i], state.errors[i] = outcome.digest, outcome.error
            state.has_pixels[i] = outcome.error is None
        return len(todo)

    def _reuse(
        self, order: Sequence[FileStat], out: np.ndarray, state: _BuildState, key: str
    ) -> list[int]:
        """Copy rows, digests and known errors of unchanged files from the previous cache;
        return the rows that still need decoding."""
        previous = self._previous(key)
        if previous is None:
            return list(range(len(order)))
        index, npy = previous
        old_rows = {tuple(row[:3]): (r, row[3]) for r, row in enumerate(index["files"])}
        old_copies = {tuple(row[:3]): row[3] for row in index["duplicates"]}
        old_errors = {tuple(row[:3]): row[3] for row in index["skipped"]}
        try:
            old = np.load(npy, mmap_mode="r")
        except (OSError, ValueError):
            return list(range(len(order)))
        if old.shape[1:] != out.shape[1:] or len(old) != len(old_rows):
            return list(range(len(order)))
        todo, pairs = [], []
        for i, f in enumerate(order):
            row = tuple(f.as_row())
            if row in old_rows:
                old_row, state.digests[i] = old_rows[row]
                state.has_pixels[i] = True
                pairs.append((i, old_row))
            elif row in old_copies:
                state.digests[i] = old_copies[row]
            elif row in old_errors:
                state.errors[i] = old_errors[row]
            else:
                todo.append(i)
        for a in range(0, len(pairs), _COPY_ROWS):
            new_idx, old_idx = zip(*pairs[a : a + _COPY_ROWS], strict=True)
            out[list(new_idx)] = old[list(old_idx)]
        if pairs:
            log.info("Image cache: reusing %d decoded images from '%s'", len(pairs), npy)
        return todo

    def _commit(self, npy: Path, index: dict, final: tuple[Path, Path]) -> None:
        """Rename into place (images first: the index marks a complete cache), drop old ones."""
        final_npy, final_index = final
        tmp_index = final_index.with_name(f"{final_index.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp_index.write_text(json.dumps(index), encoding="utf-8")
            os.replace(npy, final_npy)
            os.replace(tmp_index, final_index)
        finally:
            tmp_index.unlink(missing_ok=True)
        for old in self.cache_dir.glob(f"{glob_escape(self.family)}-*.json"):  # type: ignore[union-attr]
            if old != final_index and ".tmp-" not in old.name:
                with contextlib.suppress(OSError):  # e.g. still mapped by a run on Windows
                    old.unlink()
                    old.with_suffix(".npy").unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    """``text`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _copy_rows(src: Path, rows: Sequence[int], dst: Path) -> None:
    """Write ``src[rows]`` as a new ``.npy`` at ``dst``, a bounded number of rows at a time."""
    source = np.load(src, mmap_mode="r")
    out = np.lib.format.open_memmap(
        dst, mode="w+", dtype=np.uint8, shape=(len(rows), *source.shape[1:])
    )
    for a in range(0, len(rows), _COPY_ROWS):
        out[a : a + _COPY_ROWS] = source[list(rows[a : a + _COPY_ROWS])]
    out.flush()
    del out, source

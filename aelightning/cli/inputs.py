"""What ``ae-reconstruct``, ``ae-encode``, ``ae-sample`` and ``ae-export`` share: loading the
checkpoint onto the chosen device, finding the user's image files and decoding them in batches.

A file that is not a readable image is skipped and named (never fatal); a missing input, a
folder without images, or colour images for a grey model end the command with one sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from aelightning.api import ChannelError, TrainedAutoencoder, load_model
from aelightning.data.cache import scan_folder
from aelightning.data.images import EXTENSIONS
from aelightning.errors import ConfigError, DataError

log = logging.getLogger("aelightning")

#: skipped files named in the printed summary (all of them are in the log)
NAMED_SKIPS = 5


def load_for_command(cfg: DictConfig) -> TrainedAutoencoder:
    """``ckpt_path`` loaded onto ``accelerator`` (auto: the GPU when there is one)."""
    if not cfg.get("ckpt_path"):
        raise ConfigError(
            "ckpt_path is required, e.g. ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    return load_model(Path(str(cfg.ckpt_path)).expanduser(), device=pick_device(cfg))


def pick_device(cfg: DictConfig) -> torch.device:
    choice = str(cfg.get("accelerator") or "auto")
    if choice not in ("auto", "cpu", "gpu", "cuda"):
        raise ConfigError(f"accelerator={choice!r} is unknown; use auto, cpu or gpu.")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"accelerator={choice} but torch sees no CUDA GPU; use accelerator=cpu.")
    return torch.device("cuda")


def check_batch_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {value!r}.")
    return value


@dataclass
class ImageInput:
    """The files to read: ``root`` and their paths relative to it (``root`` is the file's own
    folder when the input is a single file)."""

    root: Path
    relpaths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    single_file: bool = False

    def note_skip(self, relpath: str, error: str) -> None:
        self.skipped.append((relpath, error))
        log.warning("skipped %s", error)

    def skipped_sentence(self) -> str:
        """``skipped 2 unreadable files: 'a.png' (...); ...`` or empty."""
        if not self.skipped:
            return ""
        named = "; ".join(error for _, error in self.skipped[:NAMED_SKIPS])
        more = len(self.skipped) - NAMED_SKIPS
        return f"skipped {len(self.skipped)} unreadable file(s): {named}" + (
            f"; and {more} more (see the log)" if more > 0 else ""
        )


def find_images(path: object, extensions: Sequence[str] = EXTENSIONS) -> ImageInput:
    """``input=FILE_OR_FOLDER`` -> the image files to read (folders searched recursively)."""
    if not path:
        raise ConfigError("input is required: input=<image file or folder of images>")
    source = Path(str(path)).expanduser()
    if source.is_file():
        return ImageInput(source.parent, [source.name], single_file=True)
    if not source.is_dir():
        raise DataError(f"input '{source}' does not exist; pass an image file or a folder.")
    files = scan_folder(source, extensions)
    if not files:
        raise DataError(
            f"input folder '{source}' holds no image files ("
            f"{', '.join('.' + e for e in extensions)}; searched recursively, hidden files "
            "skipped)."
        )
    return ImageInput(source, [f.relpath for f in files])


def check_output_outside(output: Path, images: ImageInput) -> None:
    """Outputs never go into the folder being read (a second run would read them back)."""
    if images.single_file:
        return
    out, root = output.expanduser().resolve(), images.root.resolve()
    if out == root or root in out.parents:
        raise ConfigError(f"output '{output}' lies inside input '{images.root}'; write elsewhere.")


def decoded_batches(
    model: TrainedAutoencoder,
    images: ImageInput,
    batch_size: int,
    resize: str | None = None,
    to_grey: bool = False,
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """``(relpaths, uint8 [B, C, H, W])`` batches of the readable files, in order; unreadable
    files are recorded in ``images.skipped``."""
    names: list[str] = []
    rows: list[np.ndarray] = []
    for rel in images.relpaths:
        try:
            rows.append(model.image_to_array(images.root / rel, resize, to_grey=to_grey))
            names.append(rel)
        except ChannelError:
            raise
        except DataError as exc:
            images.note_skip(rel, str(exc).rstrip("."))
        if len(rows) == batch_size:
            yield names, torch.from_numpy(np.stack(rows))
            names, rows = [], []
    if rows:
        yield names, torch.from_numpy(np.stack(rows))
    if len(images.skipped) == len(images.relpaths):
        raise DataError(
            f"none of the {len(images.relpaths)} files in input '{images.root}' is a readable "
            f"image ({images.skipped[0][1]})."
        )

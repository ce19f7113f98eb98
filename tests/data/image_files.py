"""Real image files for the image-folder tests and the decode benchmark.

The pixels come from real photographs that ship with installed packages (matplotlib's
``grace_hopper.jpg``; scikit-learn's ``china.jpg`` / ``flower.jpg`` when present), cut into
crops of many sizes and saved in the formats and modes users' folders hold. No download.

Benchmark folder (20,000 JPEGs of 64x64)::

    .venv/bin/python -m tests.data.image_files /tmp/anime_bench 20000 64
"""

from __future__ import annotations

import functools
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image


@functools.lru_cache(maxsize=1)
def photos() -> tuple[Image.Image, ...]:
    """The real photographs available offline, as RGB images."""
    from matplotlib import cbook

    found = [Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))]
    try:
        from sklearn.datasets import load_sample_images

        found += [Image.fromarray(a) for a in load_sample_images().images]
    except ImportError:
        pass
    return tuple(p.convert("RGB") for p in found)


def photo_crop(i: int, width: int, height: int, seed: int = 0) -> Image.Image:
    """Crop number ``i``: a random region of a random photo, resized to ``width x height``,
    sometimes mirrored and colour-shifted (deterministic in ``(i, seed)``)."""
    rng = np.random.default_rng([seed, i])
    photo = photos()[int(rng.integers(len(photos())))]
    w, h = photo.size
    side = int(rng.integers(min(w, h) // 4, min(w, h) + 1))
    aspect = width / height
    cw, ch = min(w, int(side * aspect)), min(h, side)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo.crop((x, y, x + cw, y + ch)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    gain = rng.uniform(0.8, 1.2, size=3)
    return Image.fromarray(np.clip(np.asarray(crop) * gain, 0, 255).astype(np.uint8))


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_crops(folder: Path, n: int, size: int, start: int = 0, seed: int = 0) -> list[Path]:
    """``n`` square JPEG crops named ``crop_<i>.jpg``, ``i`` from ``start``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"crop_{i:06d}.jpg"
        path.write_bytes(jpeg_bytes(photo_crop(i, size, size, seed)))
        paths.append(path)
    return paths


def write_mixed_folder(root: Path) -> dict[str, str]:
    """A user's messy folder: every mode and format, odd sizes, subfolders, two bad files.

    Returns ``{relative path: what it is}`` for every file that should be read; the bad ones
    are ``broken/truncated.jpg`` and ``notes.jpg`` (text); ignored files are not listed.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "broken").mkdir()
    good: dict[str, str] = {}

    def save(rel: str, img: Image.Image, what: str, **kw) -> None:
        img.save(root / rel, **kw)
        good[rel] = what

    save("wide.jpg", photo_crop(0, 97, 41), "RGB JPEG, 97x41")
    save("tall.JPG", photo_crop(1, 33, 120), "RGB JPEG, upper-case extension")
    save("big.jpeg", photo_crop(2, 640, 480), "RGB JPEG, 640x480 (DCT draft)")
    save("grey.png", photo_crop(3, 50, 50).convert("L"), "greyscale PNG")
    rgba = photo_crop(4, 64, 64).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 64)))
    save("rgba.png", rgba, "RGBA PNG")
    save("palette.png", photo_crop(5, 40, 48).convert("P"), "palette PNG")
    grey16 = (np.asarray(photo_crop(6, 30, 30).convert("L"), dtype=np.uint16) * 257).astype(
        np.uint16
    )
    save("grey16.png", Image.fromarray(grey16), "16-bit greyscale PNG")
    save("sub/a.webp", photo_crop(7, 70, 70), "WebP")
    save("sub/deeper/b.bmp", photo_crop(8, 23, 17), "BMP, 23x17")
    save("sub/c.png", photo_crop(9, 1, 1), "1x1 PNG")
    save("cmyk.jpg", photo_crop(10, 60, 45).convert("CMYK"), "CMYK JPEG")

    data = jpeg_bytes(photo_crop(11, 80, 80))
    (root / "broken" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.jpg").write_text("these are my notes, not a picture\n")
    (root / "readme.txt").write_text("ignored: not an image extension\n")
    (root / ".hidden.png").write_bytes((root / "grey.png").read_bytes())
    (root / ".thumbs").mkdir()
    (root / ".thumbs" / "x.png").write_bytes((root / "grey.png").read_bytes())
    return good


BAD_FILES = ("broken/truncated.jpg", "notes.jpg")


if __name__ == "__main__":
    out, count, px = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    write_crops(out, count, px)
    print(f"wrote {count:,} {px}x{px} JPEG crops of real photos to {out}")

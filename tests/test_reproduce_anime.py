"""``make reproduce ARGS="--anime-dir DIR"``: the anime experiments as real ``ae-train`` +
``ae-evaluate`` processes on real JPEG files, the comparison figures, and the README block."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aelightning.cli import reproduce, reproduce_anime
from aelightning.errors import DataError
from tests.data.image_files import write_crops

README = f"""# project

{reproduce.BEGIN}
mnist table
{reproduce.END}

## Anime faces

{reproduce_anime.BEGIN}
old anime table
{reproduce_anime.END}

## after
"""
VGG13 = "anime_vgg13_none,anime_vgg13_sigmoid"


@pytest.fixture(scope="module")
def anime_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick pipeline for the two SegNet-VGG13 runs on 40 real 64-px JPEG crops."""
    base = tmp_path_factory.mktemp("anime")
    write_crops(base / "faces", 40, 64)
    out = base / "out"
    args = ["--quick", "--anime-dir", str(base / "faces"), "--only", VGG13, "--out", str(out)]
    assert reproduce.main(args) == 0
    return out


@pytest.mark.slow
def test_anime_page_has_table_comparison_and_random_codes(anime_run: Path) -> None:
    page = (anime_run / reproduce_anime.PAGE).read_text()
    assert page.startswith("# Anime faces (quick smoke run")
    assert "| SegNet-VGG13, 64 px, linear code" in page and "sigmoid code" in page
    assert not (anime_run / "results.md").exists()  # --only named no MNIST experiment
    for label in ("input", "none", "sigmoid"):
        assert re.search(rf"- {label}: mean brightness 0\.\d{{3}}", page), label
    assert re.search(r"- none: mean brightness 0\.\d{3}, PSNR \d+\.\d\d dB", page)
    for name in ("bottleneck_none_vs_sigmoid", "decoder_random_codes"):
        assert (anime_run / "anime" / "figures" / f"{name}.png").stat().st_size > 1000
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert any("reconstructions_epoch000" in link for link in links)  # the per-epoch grid
    assert all((anime_run / link).is_file() for link in links)
    assert re.search(r"decodes the 40 files into the cache at [\d,]+ images/s", page)


def test_data_speed_times_a_first_decode_and_a_cache_load(tmp_path: Path) -> None:
    """Real JPEG files with one exact copy: every file counted, the cache left behind."""
    faces = tmp_path / "faces"
    first = write_crops(faces, 12, 64)[0]
    (faces / "copy.jpg").write_bytes(first.read_bytes())
    speed = reproduce_anime.data_speed(faces, tmp_path / "cache")
    assert speed["files"] == 13
    assert speed["decode_images_per_s"] == pytest.approx(13 / speed["decode_s"])
    assert speed["load_s"] > 0
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_anime_publish_replaces_only_its_block(anime_run: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    with pytest.raises(DataError, match="--quick run"):
        reproduce.publish(anime_run, readme, tmp_path / "docs", reproduce_anime.PAGE)
    full = tmp_path / "full"
    full.mkdir()
    for folder in ("runs", "eval", "anime"):
        (full / folder).symlink_to(anime_run / folder)
    quick = (anime_run / reproduce_anime.PAGE).read_text()
    (full / reproduce_anime.PAGE).write_text(quick.replace(" (quick smoke run", " (", 1))
    publish_only = ["--publish-only", "--out", str(full), "--readme", str(readme)]
    assert reproduce.main(publish_only) == 0  # only the anime page exists: only its block
    text = readme.read_text()
    assert "old anime table" not in text and "| SegNet-VGG13, 64 px" in text
    assert "mnist table" in text and text.endswith("\n## after\n")
    (full / "results.md").write_text("# Reproduced results\n\nnew mnist table\n")
    assert reproduce.main(publish_only) == 0
    assert "new mnist table" in readme.read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "docs/figures/reproduce/anime_decoder_random_codes.png" in links
    assert all((tmp_path / link).stat().st_size > 0 for link in links)


def test_missing_anime_dir_is_one_sentence(tmp_path: Path, capsys) -> None:
    args = ["--anime-dir", str(tmp_path / "nowhere"), "--only", VGG13, "--out", str(tmp_path)]
    assert reproduce.main(args) == 1
    assert "--anime-dir" in capsys.readouterr().err and not (tmp_path / "runs").exists()

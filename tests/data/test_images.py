"""ImageFolderDataModule on real image files written to tmp: modes, bad files, cache, splits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from aelightning.data import cache as cache_module
from aelightning.data.decode import decode_files, decode_image, to_rgb
from aelightning.data.images import ImageFolderDataModule, SkippedImagesWarning
from aelightning.errors import ConfigError, DataError
from tests.data.image_files import BAD_FILES, photo_crop, write_crops, write_mixed_folder


def fake_trainer(device: str = "cpu", rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    """The attributes of ``lightning.Trainer`` the datamodule reads."""
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)),
        global_rank=rank,
        world_size=world_size,
        overfit_batches=0,
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and mtime (to prove nothing was written)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("mixed") / "faces"
    return root, write_mixed_folder(root)


def make(root: Path, cache: Path | None, **kw) -> ImageFolderDataModule:
    kw = {"image_size": 16, "num_workers": 0, "progress": False, **kw}
    return ImageFolderDataModule(root, cache_dir=cache, **kw)


def loaded(root: Path, cache: Path | None, **kw) -> ImageFolderDataModule:
    dm = make(root, cache, **kw)
    dm.prepare_data()
    dm.setup()
    return dm


def all_images(dm: ImageFolderDataModule) -> dict[str, np.ndarray]:
    """``{relative path: [3, S, S] uint8}`` over all splits."""
    out = {}
    for split in ("train", "val", "test"):
        images = getattr(dm, f"{split}_images").numpy()
        out.update(zip(dm.split_files[split], images, strict=True))
    return out


# -- decoding one file ---------------------------------------------------------------------------
def test_modes_become_8bit_rgb(tmp_path: Path) -> None:
    grey = photo_crop(0, 20, 20).convert("L")
    assert np.array_equal(np.asarray(to_rgb(grey))[..., 1], np.asarray(grey))
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # fully transparent: white, not (10,20,30)
    assert np.asarray(to_rgb(rgba)).min() == 255
    g16 = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # 128 * 257
    assert g16.mode.startswith("I;16")
    assert np.asarray(to_rgb(g16)).tolist() == np.full((4, 4, 3), 128).tolist()  # not 255
    pal = photo_crop(1, 8, 8).convert("P")
    assert np.array_equal(np.asarray(to_rgb(pal)), np.asarray(pal.convert("RGB")))


@pytest.mark.parametrize("resize", ["center_crop", "stretch"])
def test_decode_matches_pil_reference(tmp_path: Path, resize: str) -> None:
    img = photo_crop(2, 90, 30)
    img.save(tmp_path / "x.png")
    box = (30, 0, 60, 30) if resize == "center_crop" else (0, 0, 90, 30)
    want = np.asarray(img.resize((12, 12), Image.Resampling.BICUBIC, box=box)).transpose(2, 0, 1)
    got = decode_image(tmp_path / "x.png", 12, resize)
    assert got.dtype == np.uint8 and got.shape == (3, 12, 12)
    assert np.array_equal(got, want)


def test_large_jpeg_uses_draft_and_stays_faithful(tmp_path: Path) -> None:
    img = photo_crop(3, 800, 800)
    img.save(tmp_path / "big.jpg", quality=95)
    got = decode_image(tmp_path / "big.jpg", 32, "center_crop").astype(float)
    full = np.asarray(img.resize((32, 32), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    assert np.abs(got - full).mean() < 4  # DCT-domain draft + bicubic ~ full decode + bicubic


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((0, 0, 0), (0, 0, 20, 20))  # left half black
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the viewer shows the black half on the right
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    got = decode_image(tmp_path / "r.jpg", 8, "stretch")
    assert got[:, :, :3].mean() > 200 and got[:, :, -3:].mean() < 50


# -- a messy folder ------------------------------------------------------------------------------
def test_mixed_folder_counts_shapes_and_range(mixed, tmp_path: Path) -> None:
    root, good = mixed
    before = snapshot(root)
    with pytest.warns(SkippedImagesWarning) as rec:
        dm = loaded(root, tmp_path / "cache", val_fraction=0.2, test_fraction=0.2)
    message = str(rec[0].message)
    assert f"skipped 2 of {len(good) + 2} files" in message and "data.root" in message
    assert all(bad in message for bad in BAD_FILES)
    assert sorted(p for p, _ in dm.skipped) == sorted(BAD_FILES)
    assert dm.dims == (3, 16, 16) and dm.num_classes == 0 and dm.class_names == ()
    images = all_images(dm)
    assert sorted(images) == sorted(good)  # hidden files and .txt ignored, bad ones skipped
    assert sum(dm.split_sizes.values()) == len(good) and min(dm.split_sizes.values()) > 0
    for split in ("train", "val", "test"):
        x = getattr(dm, f"{split}_images")
        y = getattr(dm, f"{split}_labels")
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16)
        assert y.dtype == torch.int64 and torch.all(y == 0)
    stacked = np.stack(list(images.values()))
    assert stacked.min() < 40 and stacked.max() > 215  # real photos span the range
    g = images["grey.png"]
    assert np.array_equal(g[0], g[1]) and np.array_equal(g[1], g[2])
    assert 60 < images["grey16.png"].mean() < 200  # scaled to 8 bits, not clipped to white
    assert f"{len(good)} images at 16x16" in dm.source_description
    assert snapshot(root) == before  # the image folder was only read


def test_batches_are_uint8_and_cover_the_split(mixed, tmp_path: Path) -> None:
    root, _ = mixed
    with pytest.warns(SkippedImagesWarning):
        dm = loaded(root, tmp_path / "cache", batch_size=4, val_fraction=0.2, test_fraction=0.2)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert sum(len(x) for x, _ in batches) == dm.split_sizes["train"]
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 16, 16) and y.shape == (4,)
    assert dm.eval_batch_size == 4


def test_only_bad_files_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "a.jpg").write_text("text")
    (root / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"none of the 2 files in data.root .* readable image"):
        loaded(root, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*"))  # nothing cached, no temporaries left


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda root: None, r"data.root '.*' does not exist"),
        (lambda root: root.mkdir(), r"data.root '.*' holds no files ending in .jpg"),
        (lambda root: root.write_text("x"), r"data.root '.*' is not a folder"),
    ],
)
def test_missing_or_empty_root(tmp_path: Path, setup, pattern: str) -> None:
    root = tmp_path / "faces"
    setup(root)
    dm = make(root, tmp_path / "cache")
    with pytest.raises(DataError, match=pattern):
        dm.prepare_data()
    with pytest.raises(DataError, match=pattern):
        dm.setup()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 0}, "data.image_size"),
        ({"image_size": 32.5}, "data.image_size"),
        ({"resize": "pad"}, "data.resize"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, "data.val_fraction"),
        ({"val_fraction": -0.1}, "data.val_fraction"),
        ({"test_fraction": 1.0}, "data.test_fraction"),
        ({"labels": "files"}, "data.labels"),
        ({"extensions": "jpg"}, "data.extensions"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"on_device": "gpu"}, "data.on_device"),
    ],
)
def test_bad_config_values(tmp_path: Path, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        ImageFolderDataModule(tmp_path, **kwargs)


def test_cache_inside_the_image_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.cache_dir .* inside data.root"):
        ImageFolderDataModule(tmp_path / "faces", cache_dir=tmp_path / "faces" / "cache")


@pytest.mark.parametrize(
    ("n", "val", "test", "want_val"), [(40, 0.05, 0.05, 1), (3, 0.01, 0.01, 1), (2, 0.0, 0.3, 0)]
)
def test_small_folder_gets_an_image_in_every_split(tmp_path: Path, n, val, test, want_val) -> None:
    write_crops(tmp_path / "few", n, 16)
    sizes = loaded(tmp_path / "few", None, val_fraction=val, test_fraction=test).split_sizes
    assert sum(sizes.values()) == n and sizes["train"] >= 1
    assert sizes["test"] >= 1 and sizes["val"] >= want_val and (want_val or sizes["val"] == 0)


def test_too_few_images_is_one_sentence(tmp_path: Path) -> None:
    write_crops(tmp_path / "few", 2, 16)
    with pytest.raises(
        DataError, match=r"holds 2 distinct image\(s\), too few .*data.val_fraction"
    ):
        loaded(tmp_path / "few", None, val_fraction=0.05, test_fraction=0.05)


# -- the cache -----------------------------------------------------------------------------------
def test_second_setup_is_a_cache_hit_and_a_change_rebuilds(tmp_path: Path, monkeypatch) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    write_crops(root, 24, 20)
    first = loaded(root, cache)
    assert len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1
    assert "cache '" in first.source_description

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cache_module, "decode_files", no_decoding)
    second = loaded(root, cache)
    assert all_images(second).keys() == all_images(first).keys()
    for rel, image in all_images(second).items():
        assert np.array_equal(image, all_images(first)[rel])
    monkeypatch.undo()

    # one file changes (content and mtime): a new cache; only that file is decoded again
    changed = root / "crop_000005.jpg"
    photo_crop(999, 20, 20).save(changed)
    os.utime(changed, ns=(1, 1))
    calls = []
    real = cache_module.decode_files
    monkeypatch.setattr(
        cache_module,
        "decode_files",
        lambda paths, *a, **k: calls.append(paths) or real(paths, *a, **k),
    )
    third = loaded(root, cache)
    assert [Path(p).name for p in calls[0]] == ["crop_000005.jpg"]
    assert len(list(cache.glob("*.npy"))) == 1  # the stale cache was removed
    expected = decode_image(changed, 16, "center_crop")
    assert np.array_equal(all_images(third)["crop_000005.jpg"], expected)
    unchanged = all_images(first)["crop_000006.jpg"]
    assert np.array_equal(all_images(third)["crop_000006.jpg"], unchanged)


def test_other_size_gets_its_own_cache(tmp_path: Path) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    write_crops(root, 6, 20)
    loaded(root, cache, val_fraction=0.3, test_fraction=0.3)
    dm = loaded(root, cache, image_size=8, val_fraction=0.3, test_fraction=0.3)
    assert dm.train_images.shape[1:] == (3, 8, 8)
    assert len(list(cache.glob("*.npy"))) == 2


def test_interrupted_build_leaves_no_cache(tmp_path: Path, monkeypatch) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    write_crops(root, 8, 16)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module, "decode_files", crash)
    with pytest.raises(KeyboardInterrupt):
        loaded(root, cache)
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    assert loaded(root, cache, val_fraction=0.2, test_fraction=0.2).split_sizes["train"] > 0


def test_corrupt_cache_is_rebuilt(tmp_path: Path, caplog) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    write_crops(root, 8, 16)
    first = {
        k: v.copy()
        for k, v in all_images(loaded(root, cache, val_fraction=0.2, test_fraction=0.2)).items()
    }
    (npy,) = cache.glob("*.npy")  # (a run never overwrites a cache in place: it renames a new one)
    npy.write_bytes(npy.read_bytes()[:200])
    again = all_images(loaded(root, cache, val_fraction=0.2, test_fraction=0.2))
    assert "rebuilding" in caplog.text
    assert all(np.array_equal(again[k], first[k]) for k in first)


def test_without_cache_dir_nothing_is_written(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    write_crops(root, 8, 16)
    before = set(tmp_path.rglob("*"))
    dm = loaded(root, None, val_fraction=0.2, test_fraction=0.2)
    assert set(tmp_path.rglob("*")) == before
    assert "not cached" in dm.source_description
    assert not isinstance(dm.train_images.numpy(), np.memmap)


def test_process_pool_decodes_the_same_pixels(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    paths = write_crops(root, 300, 24)
    out = {}
    for workers in (0, 2):
        npy = tmp_path / f"out{workers}.npy"
        np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(301, 3, 16, 16))
        outcomes = decode_files(
            [*map(str, paths), str(tmp_path / "missing.jpg")],
            list(range(301)),
            npy,
            16,
            "center_crop",
            num_workers=workers,
            progress=False,
        )
        assert [o.digest for o in outcomes[:300]] == [sha256_of(p) for p in paths]
        assert outcomes[300].digest is None and "FileNotFoundError" in outcomes[300].error
        out[workers] = np.load(npy)
    assert np.array_equal(out[0], out[2]) and out[2][:300].std() > 10


# -- splits --------------------------------------------------------------------------------------
def test_adding_files_never_moves_existing_ones(tmp_path: Path) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    write_crops(root, 60, 8)
    kw = {"image_size": 8, "val_fraction": 0.2, "test_fraction": 0.2}
    before = loaded(root, cache, **kw).split_files
    write_crops(root, 40, 8, start=60)
    after = loaded(root, cache, **kw).split_files
    for split in ("train", "val", "test"):
        assert set(before[split]) <= set(after[split])
        assert len(after[split]) > len(before[split])
    # and the split does not depend on the seed or on the machine: a pure content hash
    assert loaded(root, None, seed=123, **kw).split_files == after


def test_copies_share_a_split_and_count_once(tmp_path: Path, caplog) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    originals = write_crops(root, 30, 12)
    (root / "more").mkdir()
    for i, path in enumerate(originals[:10]):  # the same JPEG bytes under other names
        (root / f"more/{'zz' if i % 2 else 'aa'}_copy_{i}.jpg").write_bytes(path.read_bytes())
    (root / "crop_000000 (1).jpg").write_bytes(originals[0].read_bytes())  # a second copy
    kw = {"image_size": 12, "val_fraction": 0.3, "test_fraction": 0.3}
    caplog.set_level("INFO", logger="aelightning")
    dm = loaded(root, cache, **kw)
    assert sum(dm.split_sizes.values()) == 30  # 41 files, 30 distinct images
    assert len(dm.duplicates) == 11 and "11 duplicate files" in dm.source_description
    assert "11 of 41 files are exact copies of another file" in caplog.text
    where = {f: split for split, files in dm.split_files.items() for f in files}
    groups: dict[bytes, list[str]] = {}
    for f in sorted(root.rglob("*.jpg")):
        groups.setdefault(f.read_bytes(), []).append(f.relative_to(root).as_posix())
    assert sorted(len(g) for g in groups.values() if len(g) > 1) == [2] * 9 + [3]
    kept = dict(dm.duplicates)
    for paths in groups.values():  # one row per content, under the first of its paths
        assert [p for p in paths if p in where] == [min(paths)]
        assert all(kept[p] == min(paths) for p in paths if p != min(paths))
    # the split is the content's: renaming every file keeps every image in its split
    images = all_images(dm)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for f in sorted(root.rglob("*.jpg")):
        (renamed / f"x_{f.name}").write_bytes(f.read_bytes())
    again = loaded(renamed, cache, **kw)
    content = {images[f].tobytes(): split for f, split in where.items()}
    for split, files in again.split_files.items():
        rows = getattr(again, f"{split}_images").numpy()
        assert all(content[r.tobytes()] == split for r in rows) and len(files) == len(rows)
    # a cache hit and a rebuild after adding files keep the copies out, and nothing moves
    assert loaded(root, cache, **kw).duplicates == dm.duplicates
    (root / "new_copy.jpg").write_bytes(originals[5].read_bytes())
    write_crops(root, 5, 12, start=100)
    after = loaded(root, cache, **kw)
    assert len(after.duplicates) == 12 and sum(after.split_sizes.values()) == 35
    for split in ("train", "val", "test"):
        assert set(dm.split_files[split]) <= set(after.split_files[split])


def test_removing_the_kept_file_promotes_its_copy(tmp_path: Path) -> None:
    root, cache = tmp_path / "faces", tmp_path / "cache"
    originals = write_crops(root, 6, 12)
    (root / "zz_copy.jpg").write_bytes(originals[2].read_bytes())
    kw = {"image_size": 12, "val_fraction": 0.2, "test_fraction": 0.2}
    before = all_images(loaded(root, cache, **kw))
    originals[2].unlink()  # the copy was never decoded into the cache; now it must be
    after = loaded(root, cache, **kw)
    assert after.duplicates == [] and np.array_equal(
        all_images(after)["zz_copy.jpg"], before[originals[2].name]
    )


def test_labels_from_class_folders(tmp_path: Path) -> None:
    root = tmp_path / "classes"
    for name, n in (("cat", 10), ("dog", 12)):
        write_crops(root / name, n, 8, start=100 * len(name) + n)
    dm = loaded(root, None, image_size=8, labels="folders", val_fraction=0.2, test_fraction=0.2)
    assert dm.class_names == ("cat", "dog") and dm.num_classes == 2
    for split in ("train", "val", "test"):
        labels = getattr(dm, f"{split}_labels").tolist()
        assert labels == [int(f.startswith("dog/")) for f in dm.split_files[split]]
    write_crops(root, 1, 8)  # a loose file in the root has no class
    with pytest.raises(DataError, match=r"data.labels=folders needs every image in a class"):
        loaded(root, None, image_size=8, labels="folders")


# -- placement and DDP ---------------------------------------------------------------------------
def test_on_device_and_ddp_shards(tmp_path: Path) -> None:
    root = tmp_path / "faces"
    write_crops(root, 40, 8)
    dm = loaded(root, tmp_path / "cache", image_size=8, batch_size=5, on_device=True)
    dm.trainer = fake_trainer("meta", rank=1, world_size=2)
    dm.setup("fit")
    assert dm.train_images.device.type == "meta"
    loader = dm.train_dataloader()
    assert loader.rank == 1 and loader.world_size == 2
    assert loader.num_samples == -(-dm.split_sizes["train"] // 2)


# -- through Hydra, as `ae-train data=anime ...` -------------------------------------------------
QUIET = [
    "trainer.accelerator=cpu",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "logger=none",
    "callbacks.lr_monitor=null",
    "data.progress=false",
]


def test_config_knows_dims_without_loading(make_cfg, tmp_path: Path) -> None:
    from aelightning.builders import build_datamodule

    cfg = make_cfg("data=anime", f"data.root={tmp_path / 'nowhere'}", *QUIET, tiny=False)
    dm = build_datamodule(cfg)
    assert isinstance(dm, ImageFolderDataModule) and dm.dims == (3, 64, 64)
    assert dm.cache_dir == Path(cfg.paths.data_dir) / "cache"
    assert not dm.cache_dir.is_relative_to(dm.root)


def test_missing_root_is_one_sentence_and_exit_1(make_cfg, tmp_path: Path, capsys) -> None:
    from aelightning.cli.reporting import run_reporting_errors
    from aelightning.cli.train import train

    cfg = make_cfg("data=anime", f"data.root={tmp_path / 'nowhere'}", *QUIET, tiny=False)
    with pytest.raises(SystemExit) as exc:
        run_reporting_errors(lambda: train(cfg))
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert f"error: data.root '{tmp_path / 'nowhere'}' does not exist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "net", [["net=conv", "data.image_size=16"], ["net=vgg13", "net.base_width=4"]]
)
def test_fast_dev_run_on_the_image_folder(make_cfg, mixed, net: list[str]) -> None:
    from aelightning.cli.train import train

    root, good = mixed
    cfg = make_cfg(
        "data=anime",
        f"data.root={root}",
        "data.image_size=32",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        "data.batch_size=4",
        *net,
        "trainer.fast_dev_run=true",
        *QUIET,
        tiny=False,
    )
    with pytest.warns(SkippedImagesWarning):
        result = train(cfg)
    assert not result["interrupted"] and f"{len(good)} images" in result["data"]
    assert np.isfinite(result["metrics"]["test/loss"]) and result["metrics"]["test/psnr"] > 0


@pytest.mark.parametrize("experiment", ["anime_segnet_vgg16", "anime_vgg13_64"])
def test_experiments_compose_and_build(make_cfg, tmp_path: Path, experiment: str) -> None:
    from aelightning.builders import build_datamodule, build_model

    root = f"data.root={tmp_path / 'faces'}"
    cfg = make_cfg(f"experiment={experiment}", root, "net.base_width=4", *QUIET, tiny=False)
    dm = build_datamodule(cfg)
    model = build_model(cfg, dm.dims)
    size = 224 if experiment == "anime_segnet_vgg16" else 64
    assert dm.dims == (3, size, size)
    assert cfg.model.scheduler._target_.endswith("warmup_cosine") and cfg.model.recon_loss == "mse"
    with torch.no_grad():
        out = model.net.decode(model.net.encode(torch.rand(1, *dm.dims)))
    assert out.shape == (1, *dm.dims)


def test_split_is_not_the_raw_sha256(tmp_path: Path) -> None:
    """A folder whose files' SHA-256s all start at 0x4 or above (the public anime-face copy is
    such a folder) still gets val and test images by the fractions, not one each."""
    root = tmp_path / "skewed"
    for path in write_crops(root, 90, 12):
        if sha256_of(path) < "4":
            path.unlink()
    n = len(list(root.iterdir()))
    assert n >= 50  # ~3/4 of the crops remain, every one with a "high" SHA-256
    sizes = loaded(root, None, image_size=12, val_fraction=0.2, test_fraction=0.2).split_sizes
    assert sizes["val"] >= 4 and sizes["test"] >= 4 and sum(sizes.values()) == n


def test_a_skewed_split_is_reported(tmp_path: Path, monkeypatch, caplog) -> None:
    write_crops(tmp_path / "faces", 300, 8)
    monkeypatch.setattr(
        cache_module, "split_position", lambda digest: 0.5 + int(digest, 16) / 2**258
    )
    caplog.set_level("WARNING", logger="aelightning")
    dm = loaded(tmp_path / "faces", None, image_size=8, val_fraction=0.2, test_fraction=0.2)
    assert "the content hash put 0 of 300 images into the test split, expected ~60" in caplog.text
    assert dm.split_sizes["test"] == 1  # and still an image in every split

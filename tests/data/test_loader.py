"""InMemoryBatchLoader: epoch coverage, (seed, epoch) determinism, DDP shards, resume, device,
and that a real Lightning Trainer drives ``set_epoch`` and mid-epoch resume by itself.

Images are real MNIST digits; labels are replaced by sample ids (0..N-1) so that every test can
tell exactly which samples a batch holds.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.data import _is_dataloader_shuffled

from aelightning.data.loader import BatchGroup, InMemoryBatchLoader

N = 103  # not a multiple of the batch size nor of the world sizes


@pytest.fixture(scope="module")
def images(mnist_sample) -> torch.Tensor:
    return mnist_sample[0][::48][:N].contiguous()


def make(images: torch.Tensor, n: int = N, **kw) -> InMemoryBatchLoader:
    kw = {"batch_size": 10, "shuffle": True, "seed": 0, **kw}
    return InMemoryBatchLoader(images[:n], torch.arange(n), **kw)


def ids(loader: InMemoryBatchLoader) -> list[list[int]]:
    """Sample ids of every batch of one pass."""
    return [y.tolist() for _, y in loader]


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_sample_once_per_epoch(images, shuffle: bool) -> None:
    loader = make(images, shuffle=shuffle)
    assert len(loader) == 11 and loader.num_samples == N
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = ids(loader)
        assert [len(b) for b in batches] == [10] * 10 + [3]
        assert sorted(flat(batches)) == list(range(N))
    if not shuffle:
        assert flat(batches) == list(range(N))


def test_batches_carry_the_right_images(images) -> None:
    for x, y in make(images):
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 28, 28)
        assert torch.equal(x, images[y])


def test_order_depends_only_on_seed_and_epoch(images) -> None:
    a, b = make(images, seed=7), make(images, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    assert ids(a) == ids(b)
    epoch3 = ids(a)
    a.set_epoch(4)
    assert ids(a) != epoch3
    assert ids(a) == ids(a)  # a second pass over the same epoch repeats it
    other_seed = make(images, seed=8)
    other_seed.set_epoch(3)
    assert ids(other_seed) != epoch3
    assert flat(epoch3) == a.epoch_indices(3).tolist()


def test_drop_last(images) -> None:
    loader = make(images, drop_last=True)
    assert len(loader) == 10 and loader.num_samples == 100
    batches = ids(loader)
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert len(make(images, n=9, drop_last=True)) == 0


@pytest.mark.parametrize("n", [N, 102])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_disjoint_and_covering(images, world_size: int, n: int) -> None:
    shards = []
    for rank in range(world_size):
        loader = make(images, n=n, rank=rank, world_size=world_size)
        loader.set_epoch(5)
        shards.append(flat(ids(loader)))
    per_rank = -(-n // world_size)
    assert all(len(s) == per_rank for s in shards)  # equal batch counts on every rank
    assert (
        len({len(make(images, n=n, rank=r, world_size=world_size)) for r in range(world_size)}) == 1
    )
    union = [i for s in shards for i in s]
    assert set(union) == set(range(n))  # the ranks together cover the epoch
    assert len(union) - n == per_rank * world_size - n  # only the wrap-around padding repeats
    if n % world_size == 0:
        for r in range(world_size):
            for q in range(r + 1, world_size):
                assert not set(shards[r]) & set(shards[q])
    # the shards are slices of the single-process permutation of that epoch
    whole = make(images, n=n).epoch_indices(5).tolist()
    assert shards[1] == (whole + whole)[1 : per_rank * world_size : world_size]


def test_state_dict_resume_mid_epoch(images) -> None:
    full = make(images, seed=3)
    full.set_epoch(2)
    expected = ids(full)

    first = make(images, seed=3)
    first.set_epoch(2)
    it = iter(first)
    seen = [next(it)[1].tolist() for _ in range(4)]
    state = first.state_dict()
    assert state == {"epoch": 2, "batches_done": 4}

    resumed = make(images, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # Lightning calls this again for the restored epoch: keeps the offset
    rest = ids(resumed)
    assert seen + rest == expected
    assert resumed.state_dict() == {"epoch": 2, "batches_done": len(expected)}
    assert ids(resumed) == expected  # the next pass of the same epoch is whole again

    moved_on = make(images, seed=3)
    moved_on.load_state_dict(state)
    moved_on.set_epoch(3)  # another epoch cancels the resume point
    assert len(ids(moved_on)) == len(expected)


def test_batches_stay_on_the_data_device(images) -> None:
    # A meta tensor has no data: any copy through the host would raise, and the batch device
    # shows that indices and gather ran where the data lives.
    loader = make(images).to("meta")
    assert loader.device.type == "meta" and loader.epoch_indices().device.type == "meta"
    x, y = next(iter(loader))
    assert x.device.type == "meta" and y.device.type == "meta"
    assert x.shape == (10, 1, 28, 28) and x.dtype == torch.uint8
    assert len(list(loader)) == len(loader)


def test_to_keeps_position(images) -> None:
    loader = make(images)
    loader.load_state_dict({"epoch": 1, "batches_done": 3})
    moved = loader.to("cpu")
    assert moved.state_dict() == loader.state_dict()
    assert len(ids(moved)) == len(loader) - 3


def test_lightning_helpers_find_set_epoch(images) -> None:
    loader = make(images)
    _set_sampler_epoch(loader, 9)
    assert loader.epoch == 9
    assert _is_dataloader_shuffled(make(images, shuffle=False)) is False
    assert list(loader.sampler) == loader.epoch_indices().tolist()


class _Recorder(L.LightningModule):
    """Tiny module that records the sample ids of every training batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(28 * 28, 1)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).extend(y.tolist())
        return self.layer(x.flatten(1).float() / 255).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(tmp_path: Path, **kw) -> L.Trainer:
    kw = {
        "max_epochs": 2,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        **kw,
    }
    return L.Trainer(**kw)


def test_trainer_sets_the_epoch(images, tmp_path: Path) -> None:
    loader = make(images, n=40, batch_size=8, seed=11)
    model = _Recorder()
    _trainer(tmp_path).fit(model, train_dataloaders=loader)
    assert sorted(model.seen) == [0, 1]
    assert model.seen[0] != model.seen[1]
    for epoch in (0, 1):
        assert model.seen[epoch] == loader.epoch_indices(epoch).tolist()


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
@pytest.mark.parametrize("step", [3, 5, 7])  # mid-epoch 0, end of epoch 0, mid-epoch 1
def test_trainer_resumes_mid_epoch_exactly(images, tmp_path: Path, step: int) -> None:
    ckpt = ModelCheckpoint(
        dirpath=tmp_path, filename="{step}", every_n_train_steps=1, save_top_k=-1
    )
    full = _Recorder()
    _trainer(tmp_path, enable_checkpointing=True, callbacks=[ckpt]).fit(
        full, train_dataloaders=make(images, n=40, batch_size=8, seed=11)
    )
    order = full.seen[0] + full.seen[1]  # 2 epochs x 5 batches of 8

    resumed = _Recorder()
    _trainer(tmp_path / "resume").fit(
        resumed,
        train_dataloaders=make(images, n=40, batch_size=8, seed=11),
        ckpt_path=tmp_path / f"step={step}.ckpt",
    )
    assert [i for e in sorted(resumed.seen) for i in resumed.seen[e]] == order[step * 8 :]


@pytest.mark.parametrize("kw", [{}, {"drop_last": True}, {"binarize": True}, {"world_size": 2}])
def test_a_group_holds_the_batches_one_at_a_time_would(images, kw: dict) -> None:
    """Fused steps: groups of 4 (one gather each) carry the same batches, in the same order,
    as the loader yields one by one: the short last batch, binarised draws, DDP shards."""
    singles, grouped = make(images, **kw), make(images, **kw)
    grouped.group_size = lambda: 4
    for loader in (singles, grouped):
        loader.set_epoch(1)
    expected = list(singles)
    got = [b for item in grouped for b in (item if isinstance(item, BatchGroup) else [item])]
    assert len(got) == len(expected) == len(singles)
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)

"""The epoch's mean training loss: each batch's mean counted once per sample, the same bits
however the steps are grouped, carried over by a mid-epoch state dict."""

from __future__ import annotations

import pytest
import torch

from aelightning.models.epoch_loss import EpochLoss
from aelightning.runtime import step_values


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(seed)
    sizes = [32] * (n - 1) + [17]  # a short last batch
    return [(torch.rand((), generator=generator) * 3, size) for size in sizes]


def test_the_mean_is_over_samples() -> None:
    metric = EpochLoss()
    batches = _batches(10)
    for loss, size in batches:
        metric.add(loss, size)
    metric.settle()
    expected = sum(float(v) * n for v, n in batches) / sum(n for _, n in batches)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert metric.weight.item() == 32 * 9 + 17


def test_settling_every_n_bounds_the_kept_losses_and_keeps_the_value(monkeypatch) -> None:
    monkeypatch.setattr(step_values, "LIMIT", 4)
    metric, reference = EpochLoss(), EpochLoss()
    batches = _batches(11)
    for loss, size in batches:
        metric.add(loss, size)
        assert len(metric._kept) < 4
    monkeypatch.setattr(step_values, "LIMIT", 1000)
    for loss, size in batches:
        reference.add(loss, size)
    metric.settle()
    reference.settle()
    assert metric.compute().item() == pytest.approx(reference.compute().item(), rel=1e-6)


def test_the_state_dict_settles_first_and_a_resume_continues_the_sum() -> None:
    batches = _batches(6)
    metric = EpochLoss()
    for loss, size in batches[:3]:
        metric.add(loss, size)
    state = metric.state_dict()  # a mid-epoch checkpoint: the kept losses are in it
    assert state["weight"].item() == 96
    resumed = EpochLoss()
    resumed.load_state_dict(state)
    for loss, size in batches[3:]:
        metric.add(loss, size)
        resumed.add(loss, size)
    metric.settle()
    resumed.settle()
    assert torch.equal(metric.compute(), resumed.compute())


def test_reset_forgets_the_kept_losses() -> None:
    metric = EpochLoss()
    metric.add(torch.tensor(5.0), 4)
    metric.reset()
    metric.add(torch.tensor(1.0), 2)
    metric.settle()
    assert metric.compute().item() == 1.0

"""The HPARAMS tab is rank zero's job: other DDP ranks hold Lightning's dummy experiment."""

from __future__ import annotations

from types import SimpleNamespace

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from aelightning.cli.hparams import log_hparams


def test_a_non_zero_rank_writes_no_hparams_and_does_not_fail(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)  # as on DDP rank 1
    logger = TensorBoardLogger(tmp_path, name="tb", version="")
    trainer = SimpleNamespace(is_global_zero=False, loggers=[logger])
    log_hparams(trainer, {"net": {"latent_dim": 8}}, {"val/loss": 0.1})  # type: ignore[arg-type]
    assert not (tmp_path / "tb").exists()  # nothing written on this rank

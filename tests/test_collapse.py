"""The collapse warning on real runs: a forced collapse warns once, a learning run does not."""

from __future__ import annotations

import warnings

import pytest
import torch

from aelightning.callbacks.collapse import (
    CollapseDetector,
    CollapseWarning,
    batch_variance,
    dead_code_fraction,
)
from aelightning.cli.train import train
from aelightning.errors import ConfigError

QUIET = ["logger=none", "callbacks.collapse_warning.min_steps=1"]


def collapse_warnings(cfg) -> tuple[list[str], dict]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(cfg)
    return [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)], result


def test_statistics_closed_form() -> None:
    x = torch.tensor([[0.0, 2.0], [2.0, 2.0]])  # per-pixel variances 2 and 0
    assert batch_variance(x) == pytest.approx(1.0)
    assert batch_variance(x[:1].expand(4, 2)) == 0.0
    code = torch.tensor([[0.0, 1.0, 5.0], [0.0, 2.0, 5.0]])
    assert dead_code_fraction(code) == pytest.approx(2 / 3)


def test_forced_collapse_warns_once_naming_epoch_and_cause(make_cfg, caplog) -> None:
    # Adam at lr 1 switches the MLP's ReLU code off within a few steps: every digit -> one image
    cfg = make_cfg(*QUIET, "model.optimizer.lr=1.0", "trainer.max_epochs=2")
    messages, result = collapse_warnings(cfg)
    assert len(messages) == 1 and not result["interrupted"]  # warned once, the run went on
    (message,) = messages
    assert message.startswith("epoch 0: the reconstructions are nearly the same image")
    assert (
        "likely cause: dead code units" in message and "net.bottleneck_activation=relu" in message
    )
    assert message in caplog.text


def test_a_resumed_run_that_already_warned_stays_quiet(make_cfg, tmp_path) -> None:
    """The warning is once per run, not once per process: its flag is in the checkpoint."""
    first = make_cfg(*QUIET, "model.optimizer.lr=1.0", "trainer.max_epochs=1")
    assert len(collapse_warnings(first)[0]) == 1
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, weights_only=False)["callbacks"]
    assert any(v.get("warned") is True for v in state.values())
    resumed = make_cfg(
        *QUIET, "model.optimizer.lr=1.0", "trainer.max_epochs=2", f"ckpt_path={last}"
    )
    messages, result = collapse_warnings(resumed)
    assert messages == [] and result["epochs"] == 2


def test_collapse_with_a_linear_code_blames_the_learning_rate(make_cfg) -> None:
    cfg = make_cfg(*QUIET, "model.optimizer.lr=1.0", "net.bottleneck_activation=none")
    (message,) = collapse_warnings(cfg)[0]
    assert "likely cause: the learning rate is too high for this net (now 1)" in message


def test_a_learning_run_does_not_warn(make_cfg) -> None:
    cfg = make_cfg(*QUIET, "model.optimizer.lr=1e-2", "net.bottleneck_activation=none")
    messages, result = collapse_warnings(cfg)
    assert messages == [] and result["metrics"]["test/psnr"] > 12.0


def test_on_by_default_and_bad_settings_are_one_sentence(make_cfg) -> None:
    cfg = make_cfg()
    assert cfg.callbacks.collapse_warning._target_.endswith("CollapseDetector")
    with pytest.raises(ConfigError, match=r"callbacks\.collapse_warning\.min_ratio must be"):
        CollapseDetector(min_ratio=1.5)
    with pytest.raises(ConfigError, match=r"callbacks\.collapse_warning\.min_steps must be"):
        CollapseDetector(min_steps=-1)

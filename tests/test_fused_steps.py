"""``runtime.steps_per_call``: K optimiser steps per Lightning step give the weights, counts,
logged steps and checkpoints of one step per call (CPU, fixed seed, the bundled MNIST sample).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from aelightning.checkpointing.checkpoint import load_checkpoint
from aelightning.cli.train import train
from aelightning.data.loader import BatchGroup
from aelightning.errors import ConfigError
from aelightning.runtime.settings import RuntimeSettings
from tests.conftest import OBJECTIVES, TINY, compose_config

#: tiny nets, 2 epochs of 9 batches, and every count that can end a group set off the grid:
#: log every 4 steps, validation every 5 batches, a resume save every 7 optimiser steps
SHORT = [
    *TINY,
    "seed=3",
    "test=false",
    "logger=csv",
    "net.hidden_dims=[32]",
    "net.latent_dim=4",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=9",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=4",
    "trainer.val_check_interval=5",
    "callbacks.resume_checkpoint.every_n_train_steps=7",
    "callbacks.collapse_warning=null",
    "callbacks.reconstructions=null",
    "runtime.cpu_threads=1",  # the same threads in both fits: auto follows the load average
]


def _fit(root: Path, steps_per_call: int | str, *overrides: str) -> dict[str, Any]:
    run = root / f"k{steps_per_call}"
    cfg = compose_config(
        run,
        [*SHORT, f"data.data_dir={root}", f"runtime.steps_per_call={steps_per_call}", *overrides],
    )
    train(cfg)
    checkpoints = run / "checkpoints"
    last = load_checkpoint(checkpoints / "last.ckpt")
    csv = next(run.rglob("metrics.csv"))
    return {
        "weights": last["state_dict"],
        "global_step": last["global_step"],
        "checkpoints": sorted(p.name for p in checkpoints.iterdir()),
        "csv": csv.read_text(),
    }


def _assert_same_run(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a["global_step"] == b["global_step"]
    assert a["weights"].keys() == b["weights"].keys()
    for key in a["weights"]:
        assert torch.equal(a["weights"][key], b["weights"][key]), key
    assert a["checkpoints"] == b["checkpoints"]
    assert a["csv"] == b["csv"]  # the same values logged at the same steps, validation included


@pytest.mark.parametrize("model", OBJECTIVES)
def test_every_objective_trains_to_the_same_bits(tmp_path: Path, model: str) -> None:
    """Weights, global_step, the CSV log (train terms, lr, validation) and the checkpoints of
    steps_per_call=8 equal those of 1 (the AAE's three optimisers and noise included)."""
    overrides = [f"model={model}"]
    if model in ("aae", "vae"):
        overrides.append("net.bottleneck_activation=none")
    _assert_same_run(_fit(tmp_path, 1, *overrides), _fit(tmp_path, 8, *overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model/scheduler=warmup_cosine", "noise=gaussian"],
        ["model/scheduler=step", "noise=masking"],
        ["trainer.gradient_clip_val=0.01"],
        ["trainer.gradient_clip_val=0.001", "+trainer.gradient_clip_algorithm=value"],
        ["trainer.max_epochs=-1", "trainer.max_steps=13"],  # stops inside a would-be group
    ],
    ids=["warmup_cosine", "step_decay", "clip_norm", "clip_value", "max_steps"],
)
def test_schedules_clipping_and_max_steps_give_the_same_bits(
    tmp_path: Path, overrides: list[str]
) -> None:
    reference = _fit(tmp_path, 1, *overrides)
    _assert_same_run(reference, _fit(tmp_path, 5, *overrides))
    if "trainer.max_steps=13" in overrides:
        assert reference["global_step"] == 13


def test_auto_measures_k_and_gives_the_same_bits(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="aelightning"):
        fused = _fit(tmp_path, "auto", "trainer.max_epochs=6")
    assert "runtime.steps_per_call=auto" in caplog.text  # it measured and chose
    _assert_same_run(_fit(tmp_path, 1, "trainer.max_epochs=6"), fused)


def test_gradient_accumulation_falls_back_to_one_step_per_call(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="aelightning"):
        fused = _fit(tmp_path, 4, "trainer.accumulate_grad_batches=2")
    assert "accumulate_grad_batches" in caplog.text
    _assert_same_run(_fit(tmp_path, 1, "trainer.accumulate_grad_batches=2"), fused)


def test_a_checkpoint_resumes_across_modes(tmp_path: Path) -> None:
    """A run started with one step per call and continued with 8 (Lightning counts automatic
    and manual optimiser steps apart) ends where an uninterrupted run ends."""
    reference = _fit(tmp_path, 1)
    first = _fit(tmp_path / "a", 1, "trainer.max_epochs=1")
    run = tmp_path / "a" / "k1"
    cfg = compose_config(
        run,
        [*SHORT, f"data.data_dir={tmp_path}", "runtime.steps_per_call=8", "resume=true"],
    )
    assert first["global_step"] == 9
    train(cfg)
    last = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["global_step"] == reference["global_step"]
    for key, value in reference["weights"].items():
        assert torch.equal(value, last["state_dict"][key]), key


class BatchRecorder(L.Callback):
    """Writes the dtype and sum of every batch a callback's ``on_train_batch_end`` sees."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.seen: list[str] = []

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, i: int):
        for images, _ in batch if type(batch) is BatchGroup else [batch]:
            self.seen.append(f"{images.dtype} {images.double().sum().item():.6f}")

    def on_train_end(self, trainer: Any, module: Any) -> None:
        self.out.write_text("\n".join(self.seen))


def test_callbacks_see_each_batch_of_a_group_as_its_step_used_it(tmp_path: Path) -> None:
    """A group's batches are converted to floats one by one just before their steps; after the
    group, a callback sees every batch as one step per call shows it."""
    seen = {}
    for k in (1, 8):
        out = tmp_path / f"seen{k}.txt"
        recorder = f"+callbacks.recorder={{_target_:{__name__}.BatchRecorder,out:'{out}'}}"
        _fit(tmp_path, k, recorder)
        seen[k] = out.read_text().splitlines()
    assert len(seen[1]) == 18 and all(s.startswith("torch.float32 ") for s in seen[1])
    assert seen[8] == seen[1]


@pytest.mark.parametrize("value", [0, -2, "fast", 1.5])
def test_a_bad_value_is_one_sentence_naming_the_key(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"runtime\.steps_per_call"):
        RuntimeSettings.from_config({"steps_per_call": value})

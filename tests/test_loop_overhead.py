"""The cheaper loop pieces change no result: no profiler unless one is configured (and then
Lightning's, with its report), and the hook name the lean dispatch sets is an ordinary
attribute, as nn.Module would set it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
from lightning.pytorch.profilers import SimpleProfiler
from omegaconf import open_dict

from aelightning.cli.train import train
from aelightning.runtime.loop_overhead import NoProfiler


class ProfilerSpy(L.Callback):
    """Records the trainer's profiler and what the module's registries hold after fitting."""

    seen: ClassVar[dict[str, object]] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        registries = (pl_module._parameters, pl_module._buffers, pl_module._modules)
        ProfilerSpy.seen = {
            "profiler": trainer.profiler,
            "registered": [r for r in registries if "_current_fx_name" in r],
            "fx_name": pl_module.__dict__.get("_current_fx_name", "missing"),
        }


def _with_spy(cfg):
    with open_dict(cfg):
        cfg.callbacks.spy = {"_target_": f"{__name__}.ProfilerSpy"}
    return cfg


def test_default_run_uses_no_profiler_and_keeps_the_hook_name_plain(make_cfg):
    train(_with_spy(make_cfg("test=false")))
    seen = ProfilerSpy.seen
    assert isinstance(seen["profiler"], NoProfiler)
    assert seen["registered"] == []
    assert seen["fx_name"] != "missing"  # Lightning's hook name lives in the instance dict


def test_a_configured_profiler_is_lightnings_and_writes_its_report(make_cfg):
    cfg = make_cfg(
        "test=false",
        "trainer.profiler={_target_:lightning.pytorch.profilers.SimpleProfiler,"
        "dirpath:${paths.output_dir},filename:profile}",
    )
    train(_with_spy(cfg))
    assert type(ProfilerSpy.seen["profiler"]) is SimpleProfiler
    report = (Path(cfg.paths.output_dir) / "fit-profile.txt").read_text()
    assert "run_training_batch" in report and "[LightningModule]" in report


def test_no_profiler_profile_is_a_reusable_no_op():
    profiler = NoProfiler()
    # nested, and the same name again inside, as Lightning's hooks do
    with profiler.profile("a") as first, profiler.profile("b"), profiler.profile("a"):
        pass
    assert first is None
    assert profiler.summary() == ""

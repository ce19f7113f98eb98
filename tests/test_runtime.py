"""Fast paths: runtime settings from the config (checked against their schema), the cuDNN
autotuner and fused optimiser steps where the libraries read them, the throttled progress
bar, and a training step that never copies image data between host and device."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils._python_dispatch import TorchDispatchMode

from aelightning.builders import build_model
from aelightning.callbacks.progress import ThrottledRichProgressBar
from aelightning.cli.reporting import run_reporting_errors
from aelightning.cli.train import train
from aelightning.data.mnist import MNISTDataModule
from aelightning.errors import ConfigError
from aelightning.nets.conv import ConvNet
from aelightning.runtime.cpus import auto_cpu_threads, available_cpus
from aelightning.runtime.settings import (
    RuntimeSettings,
    compile_in_place,
    configure_model,
    configure_process,
    skip_nvml_check,
)
from tests.conftest import ROOT


@pytest.fixture
def restore_torch_settings():
    """Process-wide settings changed by a test are put back afterwards."""
    threads = torch.get_num_threads()
    precision = torch.get_float32_matmul_precision()
    nvml = os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK")
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(precision)
    if nvml is None:
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    else:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = nvml


# ------------------------------------------------------------------------------ settings
def test_defaults_come_from_the_real_config(make_cfg) -> None:
    cfg = make_cfg()
    settings = RuntimeSettings.from_config(cfg.runtime, cfg.compile)
    assert settings == RuntimeSettings()  # the yaml and the dataclass agree
    assert settings.cpu_threads is None and cfg.model.optimizer.fused and not settings.compile


@pytest.mark.parametrize(
    ("block", "compile_value", "key"),
    [
        ({"cpu_threads": 0}, False, "runtime.cpu_threads"),
        ({"cpu_threads": "many"}, False, "runtime.cpu_threads"),
        ({"float32_matmul_precision": "low"}, False, "runtime.float32_matmul_precision"),
        ({"cudnn_benchmark": "yes"}, False, "runtime.cudnn_benchmark"),
        ({"channels_last": 1}, False, "runtime.channels_last"),
        ({"channels_last": "sometimes"}, False, "runtime.channels_last"),
        ({"fused_optimizer": "auto"}, False, "runtime.fused_optimizer"),
        # OmegaConf's bool reads yes/no/on/off too: these are values it does not read
        ({"flush_denormal": "maybe"}, False, "runtime.flush_denormal"),
        ({"lean_hooks": "sometimes"}, False, "runtime.lean_hooks"),
        ({"compile_mode": "fast"}, False, "runtime.compile_mode"),
        ({"compile_backend": ""}, False, "runtime.compile_backend"),
        ({"threads": 2}, False, "runtime.threads"),
        ({}, "maybe", "compile="),
    ],
)
def test_bad_values_name_the_key(block, compile_value, key) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RuntimeSettings.from_config(block, compile_value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("runtime.cpu_threads=many", "error: runtime.cpu_threads='many' is not allowed; use auto"),
        ("runtime.float32_matmul_precision=low", "use one of highest, high, medium."),
        # a config written for the old keys: one sentence saying where the setting went
        ("+runtime.cudnn_benchmark=true", "error: runtime.cudnn_benchmark is no longer a "),
        ("+runtime.fused_optimizer=false", "set model.optimizer.fused"),
    ],
)
def test_the_cli_reports_a_bad_runtime_value_in_one_sentence(
    make_cfg, capsys, override, expected
) -> None:
    with pytest.raises(SystemExit):
        run_reporting_errors(lambda: train(make_cfg(override)))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err


@pytest.mark.filterwarnings("ignore:You passed `deterministic=True` and `benchmark=True`")
def test_the_cudnn_autotuner_is_lightnings_benchmark_on_unless_deterministic(make_cfg) -> None:
    """``trainer.benchmark`` defaults to ``not trainer.deterministic`` (the old
    ``runtime.cudnn_benchmark=auto``) and Lightning's Trainer sets torch's flag from it."""
    import hydra

    before = torch.backends.cudnn.benchmark
    try:
        for overrides, expected in (
            ([], True),
            (["trainer.deterministic=true"], False),
            (["trainer.deterministic=true", "trainer.benchmark=true"], True),
            (["trainer.benchmark=false"], False),
        ):
            cfg = make_cfg(*overrides)
            assert cfg.trainer.benchmark is expected
            hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
            assert torch.backends.cudnn.benchmark is expected
    finally:
        torch.backends.cudnn.benchmark = before


def test_threads_are_set_on_cpu(restore_torch_settings) -> None:
    applied = configure_process(RuntimeSettings(cpu_threads=1), "cpu")
    assert torch.get_num_threads() == 1 and applied["cpu_threads"] == 1
    threads, why = auto_cpu_threads()
    assert 1 <= threads <= max(1, os.cpu_count() or 1) and "load average" in why
    configure_process(RuntimeSettings(float32_matmul_precision="medium"), "cpu")
    assert torch.get_float32_matmul_precision() == "medium"


def test_denormals_are_flushed_on_cpu(restore_torch_settings) -> None:
    """Denormal floats run on a slow path of x86 FPUs (half the speed of the seeds' MLP);
    with flushing on they read as zero, as the docs of torch.set_flush_denormal show."""
    try:
        applied = configure_process(RuntimeSettings(), "cpu")
        if applied["flush_denormal"]:
            assert torch.tensor([1e-323], dtype=torch.float64).item() == 0.0
        configure_process(RuntimeSettings(flush_denormal=False), "cpu")
        assert torch.tensor([1e-323], dtype=torch.float64).item() != 0.0
    finally:
        torch.set_flush_denormal(False)


def test_nvml_check_is_dropped_only_without_gpus(restore_torch_settings) -> None:
    os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"  # what importing Lightning does
    dropped = skip_nvml_check()
    assert dropped == (torch.cuda.device_count() == 0)
    assert ("PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ) != dropped
    assert not skip_nvml_check() or torch.cuda.device_count() > 0  # idempotent


# ----------------------------------------------------------------------------- optimiser
@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_configured_optimisers_take_torchs_fused_step(make_cfg, name) -> None:
    module = build_model(make_cfg(f"model/optimizer={name}"), (1, 28, 28))
    assert configure_model(module, RuntimeSettings(), "cpu") == {}  # nothing to change on CPU
    optimizer = module.optimizer_factory(module.parameters())
    assert optimizer.defaults["fused"] is True
    module(torch.rand(4, 1, 28, 28)).square().mean().backward()
    optimizer.step()  # torch checks fused support here


def test_fused_falls_back_where_torch_has_no_fused_step(make_cfg, caplog) -> None:
    """torch only checks at the first step: fused Adam on ``meta`` parameters (a device
    without fused kernels) would fail there; the unfused step runs instead, with a warning."""
    module = build_model(make_cfg("model=aae"), (1, 28, 28)).to("meta")
    with caplog.at_level("WARNING", logger="aelightning"):
        applied = configure_model(module, RuntimeSettings(), "meta")
    assert applied == {
        f"model.{key}.fused": "false (not on meta)"
        for key in ("optimizer", "d_optimizer", "g_optimizer")
    }
    assert "model.d_optimizer.fused=true: torch has no fused optimiser step" in caplog.text
    for factory in (module.optimizer_factory, module.d_optimizer_factory):
        optimizer = factory(module.parameters())
        assert optimizer.defaults["fused"] is False and optimizer.defaults["lr"] > 0
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()
    with pytest.raises(RuntimeError, match="fused=True"):  # what the fallback avoids
        optimizer = torch.optim.Adam(module.parameters(), fused=True)
        optimizer.step()


def test_fused_and_foreach_together_name_the_key(make_cfg) -> None:
    module = build_model(make_cfg("+model.optimizer.foreach=true"), (1, 28, 28))
    with pytest.raises(ConfigError, match=r"model\.optimizer: fused=true and foreach=true"):
        configure_model(module, RuntimeSettings(), "cpu")
    module = build_model(
        make_cfg("model.optimizer.fused=false", "+model.optimizer.foreach=true"), (1, 28, 28)
    )
    configure_model(module, RuntimeSettings(), "cpu")
    assert module.optimizer_factory(module.parameters()).defaults["foreach"] is True


def test_configure_model_on_the_real_module(make_cfg) -> None:
    cfg = make_cfg()
    module = build_model(cfg, (1, 28, 28))
    applied = configure_model(module, RuntimeSettings(), "cpu")
    assert applied == {}  # no channels_last on CPU, no compile, fused as configured
    optimizer = module.optimizer_factory(module.parameters())
    assert optimizer.defaults["fused"] is True


def test_channels_last_for_conv_nets() -> None:
    net = ConvNet((1, 28, 28), channels=[4, 8], latent_dim=3)
    module = SimpleNamespace(net=net)
    assert configure_model(module, RuntimeSettings(), "cpu") == {}  # auto: GPU only
    configure_model(module, RuntimeSettings(channels_last=True), "cpu")
    conv = net.encoder[1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 1, 28, 28)
    assert net(x).shape == x.shape


def test_compile_in_place_keeps_state_dict_keys() -> None:
    torch.manual_seed(0)
    net = ConvNet((1, 28, 28), channels=[4, 8], latent_dim=3)
    keys = list(net.state_dict())
    x = torch.rand(2, 1, 28, 28)
    expected = net(x)
    compile_in_place(net, backend="eager")
    assert list(net.state_dict()) == keys
    assert torch.allclose(net(x), expected)
    assert net.encoder._compiled_call_impl is not None


def test_compiled_run_writes_loadable_checkpoints(make_cfg, tmp_path) -> None:
    """``compile=true`` through train(): the checkpoint loads into an uncompiled model."""
    cfg = make_cfg(
        "compile=true",
        "runtime.compile_backend=eager",
        "test=false",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "callbacks.figures=null",
        "callbacks.projector=null",
    )
    result = train(cfg)
    ckpt = torch.load(result["best_checkpoint"], map_location="cpu", weights_only=True)
    fresh = build_model(cfg, (1, 28, 28))
    assert list(ckpt["state_dict"]) == list(fresh.state_dict())
    fresh.load_state_dict(ckpt["state_dict"])


# ------------------------------------------------------------------- no per-batch copies
class CrossDeviceCopies(TorchDispatchMode):
    """Record every op whose output lives on another device than its tensor inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[tuple[str, torch.dtype, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.device for a in args if isinstance(a, torch.Tensor)}
        outputs = out if isinstance(out, (tuple, list)) else [out]
        for t in outputs:
            if isinstance(t, torch.Tensor) and inputs and t.device not in inputs:
                self.copies.append((str(func), t.dtype, tuple(t.shape)))
        return out


def test_device_resident_data_is_never_copied_per_batch(make_cfg) -> None:
    """Data on an accelerator (here ``meta``, which has no host memory at all) goes through
    the real data module, loader, Lightning's batch transfer, the module's float conversion
    and the net without one host<->device copy of image data."""
    meta = torch.device("meta")
    dm = MNISTDataModule(source="sample", batch_size=128, seed=0)
    dm.trainer = SimpleNamespace(  # what setup() reads of a Trainer on that device
        strategy=SimpleNamespace(root_device=meta),
        global_rank=0,
        world_size=1,
        overfit_batches=0,
    )
    dm.setup("fit")
    assert dm.train_images.device == meta
    module = build_model(make_cfg(), dm.dims).to(meta)
    loader = dm.train_dataloader()
    loader.set_epoch(1)

    with CrossDeviceCopies() as recorder:
        batches = 0
        for batch in loader:
            assert batch[0].device == meta and batch[0].dtype == torch.uint8
            batch = move_data_to_device(batch, meta)  # Lightning's default transfer
            batch = module.on_after_batch_transfer(batch, 0)
            assert batch[0].dtype == torch.float32 and batch[0].device == meta
            # the net's pass (the module's loss opens an autocast region, which meta lacks)
            x_hat = module.net(module.noise(batch[0]))
            assert torch.nn.functional.mse_loss(x_hat, batch[0]).device == meta
            batches += 1

    assert batches == len(loader) == 32  # the sample's 4,000 training digits
    image_copies = [c for c in recorder.copies if c[1] in (torch.uint8, torch.float32)]
    assert image_copies == []
    # the only transfer: the epoch's sample order (one int64 index vector per epoch)
    assert [c[1:] for c in recorder.copies] == [(torch.int64, (4000,))]


# ---------------------------------------------------------------------------- progress bar
class CountingBar(ThrottledRichProgressBar):
    """Records the epoch of every metric read during training (class-wide: ``train`` builds
    its own instance from the config)."""

    reads: ClassVar[list[int]] = []

    def _update_metrics(self, trainer, pl_module) -> None:
        if trainer.training:
            CountingBar.reads.append(trainer.current_epoch)
        super()._update_metrics(trainer, pl_module)


def test_progress_bar_reads_metrics_only_when_due(make_cfg) -> None:
    """Lightning's bar reads (and ``.item()``s) the metrics after every batch: 32 times per
    epoch here. This one reads them on an epoch's first and last batch and at its end when
    ``update_interval_s`` has not passed in between."""
    cfg = make_cfg(
        "trainer.max_epochs=2",
        "test=false",
        "callbacks.rich_progress_bar={_target_:tests.test_runtime.CountingBar,"
        "update_interval_s:3600}",
        "callbacks.figures=null",
        "callbacks.projector=null",
    )
    CountingBar.reads.clear()
    train(cfg)
    assert CountingBar.reads.count(0) == 3 and CountingBar.reads.count(1) == 3


DENORMAL_CHECK = """
import sys
import numpy as np
import torch
from aelightning.runtime.settings import RuntimeSettings, configure_early, configure_process

if sys.argv[1] == "early":
    configure_early(RuntimeSettings())  # what train() and the bench do first
torch.set_num_threads(2)
big = torch.from_numpy(np.ones(4_000_000, dtype=np.float32))
(big * 2).sum()  # data work: torch's OpenMP threads start here
configure_process(RuntimeSettings(cpu_threads=2), "cpu")  # flush_denormal=True, 2 threads
bits = np.full(4_000_000, 0x000AE398, dtype=np.int32)  # 1e-39, made without arithmetic
denormal = torch.from_numpy(bits.view(np.float32))
product = denormal * 0.9  # split across both threads
print("unflushed", int((product.view(torch.int32) != 0).sum()))
"""


def _unflushed(mode: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", DENORMAL_CHECK, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split()[-1])


@pytest.mark.skipif(available_cpus() < 2, reason="needs 2 CPUs for an OpenMP worker thread")
def test_denormals_are_flushed_in_every_openmp_thread() -> None:
    """The flag is per thread and OpenMP workers copy it when created: set after the first
    parallel op it reaches only the main thread, and half of every 2-thread op stays on the
    slow path (9x slower, measured). Set first, as train() and the bench do, it reaches all."""
    assert _unflushed("early") == 0
    assert _unflushed("late") == 2_000_000  # the worker's half

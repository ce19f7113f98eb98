"""``make bench`` on real data: the three ways train the same samples, the clock inside a real
fit measures what it says, the report holds the numbers it was given."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from omegaconf import open_dict

import benchmarks as bench
from aelightning.builders import build_model
from aelightning.cli.train import train
from aelightning.errors import DataError
from benchmarks.report import bf16_matmuls, environment
from benchmarks.report import publish as publish_bench
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def sample_source() -> tuple[torch.Tensor, torch.Tensor, str]:
    return bench.mnist_source(None)


def test_seeds_copy_holds_exactly_the_frameworks_training_split(tmp_path, sample_source):
    from torchvision import datasets

    data = bench.prepare_mnist(tmp_path, sample_source, n=600, seed=3)
    assert data.train_images is not None and data.train_images.shape == (600, 1, 28, 28)
    seeds = datasets.MNIST(str(data.seeds_dir), train=True)  # torchvision's own reader
    assert len(seeds) == 600
    assert torch.equal(seeds.data, data.train_images[:, 0])
    assert "data.source=idx" in data.overrides and "data.val_size=100" in data.overrides


def test_tile_repeats_real_images_to_any_count(sample_source):
    images = sample_source[0]
    tiled = bench.tile(images, len(images) * 2 + 7)
    assert len(tiled) == len(images) * 2 + 7
    assert torch.equal(tiled[len(images) : 2 * len(images)], images)


def test_limit_loop_trains_and_splits_its_time(make_cfg, sample_source):
    cfg = make_cfg()
    module = build_model(cfg, (1, 28, 28))
    images = sample_source[0][:512]
    run = bench.run_limit(
        module, images, 64, epochs=3, device=torch.device("cpu"), profile=True, autocast_dtype=None
    )
    assert [e["samples"] for e in run.epochs] == [512] * 3
    assert [e["steps"] for e in run.epochs] == [8] * 3
    ms = run.ms_per_step()
    assert {"data", "forward", "backward", "optimizer"} <= set(ms)
    parts = sum(v for k, v in ms.items() if k not in ("total", "other"))
    assert parts <= ms["total"] * 1.001 and parts > 0.5 * ms["total"]
    assert run.samples_per_s > 0 and run.samples_per_cpu_s > 0


def test_seeds_loop_runs_apart_with_torch_defaults(make_cfg, tmp_path, sample_source):
    """(b) trains in a fresh process with denormals not flushed in it, though this process
    flushes them, and with this process's number of threads."""
    from aelightning.runtime.settings import flush_denormals

    data = bench.prepare_mnist(tmp_path, sample_source, n=256, seed=0)
    cfg = make_cfg("data.batch_size=64")
    case = bench.Case("mlp-b64", "mlp", "mnist", 64)
    threads = torch.get_num_threads()
    assert flush_denormals(True)
    try:
        assert torch.tensor([1e-39]).mul(1.0).item() == 0.0  # flushed here
        job = bench.SeedsJob(cfg, (1, 28, 28), 0, data, case, 2, torch.device("cpu"))
        run = bench.run_seeds_apart(replace(job, threads=threads))
    finally:
        flush_denormals(False)
    assert run.extra["pid"] != os.getpid()
    assert run.extra["denormals_flushed"] is False
    assert run.extra["cpu_threads"] == threads
    assert [e["samples"] for e in run.epochs] == [256, 256]
    assert [e["steps"] for e in run.epochs] == [4, 4]
    assert run.peak_rss_mb > 0


def test_epoch_clock_times_a_real_fit(make_cfg, tmp_path):
    cfg = make_cfg(
        "trainer.max_epochs=2",
        "test=false",
        "callbacks.figures=null",
        "callbacks.projector=null",
        "trainer.profiler={_target_:lightning.pytorch.profilers.SimpleProfiler}",
    )
    out = tmp_path / "clock.json"
    with open_dict(cfg):
        cfg.callbacks.bench_clock = {
            "_target_": "benchmarks.EpochClock",
            "out": str(out),
            "profile": True,
        }
    train(cfg)
    clock = json.loads(out.read_text())
    epochs = clock["epochs"]
    assert [e["samples"] for e in epochs] == [4000, 4000]  # the sample's training split
    assert [e["steps"] for e in epochs] == [32, 32]
    run = bench.Run("framework", epochs)
    ms = bench.framework_parts(run.ms_per_step())
    for part in ("data", "forward", "backward", "optimizer", "logging", "callbacks"):
        assert ms[part] > 0, part
    assert ms["forward"] + ms["backward"] + ms["optimizer"] < ms["total"]
    assert math.isclose(sum(v for k, v in ms.items() if k != "total"), ms["total"], rel_tol=1e-6)


def test_memory_per_image_is_c_h_w(tmp_path):
    opts = bench.options_from(bench.parse_args(["--quick", "--out", str(tmp_path)]), [])
    b = bench.Bench(opts, tmp_path)
    row = b._memory_row("mnist", bench.prepare_mnist(tmp_path, b.source, 1000, 0), (1, 28, 28))
    assert row["images"] == 1000 + 2 * 100
    assert row["bytes_per_image"] == row["c_h_w"] == 784
    assert row["label_bytes_per_image"] == 8
    # a fresh process: resident memory grows by at least the images it now holds
    assert row["rss_growth_mb"] * 2**20 >= row["image_bytes"]


def test_quick_bench_writes_json_and_table(tmp_path):
    """The CLI end to end on one case: three ways, same samples, numbers in both files."""
    out = tmp_path / "bench"
    result = bench.main(
        ["--quick", "--cases", "mlp-b32", "--no-scaling", "--scale", "0.5", "--out", str(out)]
    )
    saved = json.loads((out / "bench.json").read_text())
    assert saved["cases"][0]["case"] == result["cases"][0]["case"] == "mlp-b32"
    case = saved["cases"][0]
    assert case["samples"] == 1000
    runs = case["runs"]
    for method in bench.METHODS:
        (run,) = runs[method]
        # warm-up, one timed epoch, and one more under the call counter
        assert [e["samples"] for e in run["epochs"]] == [1000] * 3
        assert ["calls" in e for e in run["epochs"]] == [False, False, True]
        assert run["samples_per_s"] > 0 and run["peak_rss_mb"] > 0
    calls = case["calls_per_step"]
    assert 0 < calls["limit"] < calls["framework"]  # the loop does more than the maths
    median = case["median_samples_per_s"]
    assert math.isclose(case["a/b"], median["framework"] / median["seeds"])
    assert math.isclose(case["a/c"], median["framework"] / median["limit"])
    assert math.isclose(case["a1/c"], median["framework_k1"] / median["limit"])
    # K=1: one Lightning step per optimiser step; auto: fewer (steps fused)
    lightning = case["lightning_calls_per_step"]
    assert lightning["framework_k1"] == 1.0 and 0 < lightning["framework"] < 1.0
    assert set(case["profile"]) == set(bench.METHODS)
    table = (out / "bench.md").read_text()
    assert f"| mlp-b32 | 32 | 1,000 | {median['framework']:,.0f} |" in table
    assert "mlp-b256 a/c ≥ 0.85: – (not measured)" in table

    # --publish: a quick or partial run never reaches the README, a full one does, verbatim
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\ntail\n")
    with pytest.raises(DataError, match="--quick run"):
        publish_bench(out, readme)
    saved["command"] = "python -m benchmarks --data-dir DIR"
    (out / "bench.json").write_text(json.dumps(saved))
    with pytest.raises(DataError, match="lacks mlp-b256, conv-b128, anime-conv64-b64"):
        publish_bench(out, readme)
    saved["cases"] = [{**case, "case": c.name} for c in bench.CASES]
    (out / "bench.json").write_text(json.dumps(saved))
    publish_bench(out, readme)
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- bench:end -->\ntail\n")
    assert f"| anime-vae64-b64 | 32 | {median['framework']:,.0f} |" in text
    assert "`python -m benchmarks --data-dir DIR` on " in text
    assert f"CPUs, bf16 matmuls: {environment(torch.device('cpu'))['cpu_bf16']}, device" in text


def test_the_machine_line_says_what_the_cpu_has_for_bf16_matmuls():
    """The anime rows run bf16-mixed: AMX makes them fast, AVX-512 bf16 alone does not."""
    assert bf16_matmuls({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}) == "AMX"
    assert bf16_matmuls({"avx512f", "avx512_bf16"}) == "AVX-512, no AMX"
    assert bf16_matmuls({"avx2"}) == "none"


@pytest.mark.slow
def test_make_bench_quick_runs_every_case_and_scaling(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    names = [c["case"] for c in result["cases"]]
    assert names == [c.name for c in bench.CASES]
    measured = [c for c in result["cases"] if not c.get("skipped")]
    assert all(c["median_samples_per_s"]["framework"] > 0 for c in measured)
    scaling = result["scaling"]
    assert [r["batch_size"] for r in scaling["batch_size"]] == list(bench.QUICK.batch_sizes)
    assert all(r["bytes_per_image"] == r["c_h_w"] for r in scaling["memory"])
    assert {t["case"] for t in result["targets"]} == {
        "mlp-b32",
        "mlp-b256",
        "conv-b128",
        "anime-conv64-b64",
        "anime-vgg13-b32",
        "anime-vae64-b64",
    }
    assert "## Throughput vs batch size" in (tmp_path / "bench.md").read_text()


def test_memory_mapped_sets_are_told_from_ones_in_memory(tmp_path):
    import numpy as np

    from benchmarks.runner import _is_mmap

    path = tmp_path / "images.npy"
    np.save(path, np.zeros((8, 3, 4, 4), np.uint8))
    mapped = torch.from_numpy(np.load(path, mmap_mode="c"))  # as the image-folder cache
    assert _is_mmap(mapped) and _is_mmap(mapped[2:])
    assert not _is_mmap(mapped.clone()) and not _is_mmap(torch.zeros(8, 3, 4, 4))


def test_recipe_cases_compose_the_experiment_and_the_loops_use_its_objective(tmp_path):
    """The anime rows run each recipe as `make reproduce` trains it (net, precision, batch),
    and the plain loops optimise the same loss as the framework (a VAE's, not an MSE)."""
    from aelightning.config import compose_config
    from benchmarks.ways import autocast_dtype_for, objective_for

    cases = {c.name: c for c in bench.CASES}
    vgg = cases["anime-vgg13-b32"]
    cfg = compose_config(tmp_path / "vgg", [*vgg.overrides, "data.root=unused"])
    assert cfg.net._target_.endswith("SegNetVGG") and cfg.net.base_width == 32
    assert cfg.data.batch_size == 32 and autocast_dtype_for(cfg.trainer.precision) is torch.bfloat16

    vae_case = cases["anime-vae64-b64"]
    cfg = compose_config(
        tmp_path / "vae", [*vae_case.overrides, "data.root=unused", "net.channels=[4,8]"]
    )
    vae = build_model(cfg, (3, 16, 16))
    x = torch.rand(4, 3, 16, 16)
    torch.manual_seed(0)
    loss = objective_for(vae)(x)
    torch.manual_seed(0)
    assert torch.equal(loss, vae.model_step((x,)).loss)  # the ELBO with its KL term
    assert loss > 100  # nats per image, not a per-pixel MSE

    cfg = compose_config(tmp_path / "ae", ["net=mlp"])
    ae = build_model(cfg, (1, 28, 28))
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(objective_for(ae)(x), torch.nn.MSELoss()(ae.net(x), x))  # the seeds'

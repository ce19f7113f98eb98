"""``make gpu-check``: its CPU self-test (part of the fast suite), its copy counter, its
failure report, and on machines with GPUs the real thing (skipped elsewhere, saying why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import gpucheck
from benchmarks.gpuprobe import ImageCopies
from tests.helpers import run_if


def _report(out: Path) -> dict:
    return json.loads((out / "gpucheck.json").read_text())


def test_dry_run_runs_every_objective_and_net_on_cpu(tmp_path, capsys):
    assert gpucheck.main(["--dry-run", "--out", str(tmp_path)]) == 0
    report = _report(tmp_path)
    rows = {r["case"]: r for r in report["results"]}
    matrix = {f"{m}x{n}" for m in gpucheck.objectives() for n in gpucheck.NETS}
    assert len(matrix) >= 21 and matrix <= set(rows)
    assert report["dry_run"] is True
    for name in matrix:
        row = rows[name]
        assert row["status"] == "ok", row
        assert row["h2d_image_copies"] == 0 and row["image_copies_seen"] > 0
        assert row["cpu_reload_max_abs_diff"] <= gpucheck.DRY.atol
        assert row["channels_last"] is (None if name.endswith("mlp") else True)
    assert rows["compile=true ae x mlp"]["status"] == "ok"
    assert rows["compile=true ae x mlp"]["step_ms_compiled"] > 0
    speeds = rows["throughput (a) vs (c)"]
    cases = ("mlp-b32", "mlp-b256", "mlp-b1024", "conv-b128")
    assert set(speeds) >= set(cases)
    for c in cases:  # (a) with K=1 and with runtime.steps_per_call=auto, and (c)
        assert speeds[c]["framework"] > 0 and speeds[c]["framework_k1"] > 0, c
        assert speeds[c]["limit"] > 0 and speeds[c]["a1/c"] > 0, c
    assert rows["ddp"]["status"] == "skip"
    table = capsys.readouterr().out
    assert "aexconv" in table and "FAIL" not in table


def test_without_cuda_it_says_so_and_runs_the_self_test(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpucheck.main(["--out", str(tmp_path), "--only", "compile"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("gpu-check: no CUDA device here")
    assert _report(tmp_path)["dry_run"] is True


def test_a_failing_case_is_named_and_exits_1(tmp_path, capsys, monkeypatch):
    def broken(self):
        raise RuntimeError("the compiled step returned NaN")

    monkeypatch.setattr(gpucheck.Check, "compile_case", broken)
    assert gpucheck.main(["--dry-run", "--out", str(tmp_path), "--only", "compile"]) == 1
    captured = capsys.readouterr()
    assert "gpu-check FAILED: compile=true ae x mlp" in captured.err
    assert "RuntimeError: the compiled step returned NaN" in captured.out


def test_copy_counter_counts_image_sized_host_to_device_copies():
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    with ImageCopies("meta", image.numel()) as copies:
        image.to("meta")  # host -> device (meta stands in for cuda here)
        image.float()  # a copy on the host: seen, not host-to-device
        torch.zeros(3).to("meta")  # smaller than an image: ignored
        buffer = torch.empty(1, 28, 28, dtype=torch.uint8, device="meta")
        buffer.copy_(image)  # copy_ into a device buffer
    assert copies.host_to_device == 2
    assert copies.seen == 3


@pytest.mark.slow
def test_ddp_case_on_cpu_gives_disjoint_shards_and_same_weights(tmp_path):
    args = ["--dry-run", "--out", str(tmp_path), "--only", "ddp", "--ddp-devices", "2"]
    assert gpucheck.main(args) == 0
    (row,) = _report(tmp_path)["results"]
    assert row["status"] == "ok" and row["shard_sizes"] == [2000, 2000]


# ------------------------------------------------------------------ on machines with GPUs
def _gpu_check(tmp_path: Path) -> gpucheck.Check:
    return gpucheck.Check(torch.device("cuda"), tmp_path, dry=False, ddp_devices=0)


@run_if(min_gpus=1, bf16=True)
@pytest.mark.parametrize("net", gpucheck.NETS)
def test_gpu_bf16_fit_keeps_images_on_device_and_reloads_on_cpu(tmp_path, net):
    result = _gpu_check(tmp_path).objective_net("ae", net)
    assert result.ok, result.detail
    assert result.values["precision"] == "bf16-mixed"
    assert result.values["data_device"].startswith("cuda")
    assert result.values["h2d_image_copies"] == 0
    assert result.values["channels_last"] is (None if net == "mlp" else True)


@run_if(min_gpus=2)
@pytest.mark.slow
def test_ddp_on_two_gpus(tmp_path):
    check = gpucheck.Check(torch.device("cuda"), tmp_path, dry=False, ddp_devices=2)
    result = check.ddp()
    assert result.ok, result.detail


@run_if(min_gpus=1)
@pytest.mark.slow
def test_make_gpu_check_passes(tmp_path):
    assert gpucheck.main(["--out", str(tmp_path)]) == 0

"""``make reproduce ARGS=--benchmarks``: the binarised-MNIST VAE end to end on the bundled
sample (one short epoch, k=10), and the README table that only a complete full run may fill."""

from __future__ import annotations

from pathlib import Path

import pytest

from aelightning.checkpointing.atomic import read_json
from aelightning.cli import benchmarks, reproduce
from aelightning.errors import DataError

README = f"""# project

{benchmarks.BEGIN}
old table
{benchmarks.END}

## after
"""


@pytest.fixture(scope="module")
def quick_vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("benchmarks") / "out"
    argv = ["--benchmarks", "--quick", "--only", "vae_binarized", "--out", str(out)]
    assert reproduce.main(argv) == 0
    return out


def test_quick_vae_benchmark_trains_binarised_and_scores_the_same_test_set(
    quick_vae: Path,
) -> None:
    trained = read_json(quick_vae / "runs" / "vae_binarized" / "metrics.json")
    evaluated = read_json(quick_vae / "eval" / "vae_binarized" / "metrics.json")
    for result in (trained, evaluated):  # the protocol is on record in both
        assert "binarised: train re-drawn every batch" in result["data"]
    metrics = evaluated["metrics"]
    # ae-evaluate rebuilt the same fixed binarisation of the test set: the run's test pass
    # reproduces to float precision (grey test images would score tens of nats apart)
    for key in ("test/loss", "test/neg_elbo", "test/kl"):
        assert metrics[key] == pytest.approx(trained["metrics"][key], abs=1e-3), key
    assert metrics["test/iw_samples"] == 10
    assert 0 < metrics["test/iw_nll"] <= metrics["test/neg_elbo_k"] + 1e-3
    assert metrics["test/kl"] > 0
    text = (quick_vae / "benchmarks.md").read_text()
    assert benchmarks.QUICK_TITLE in text
    row = next(line for line in text.splitlines() if line.startswith("| VAE, Bernoulli"))
    assert f"{metrics['test/iw_nll']:.2f} nats" in row and "86.76" in row
    assert "1 epochs" in row and "CPU-min" in row


def test_quick_and_partial_tables_are_never_published(quick_vae: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    with pytest.raises(DataError, match="--quick run"):
        benchmarks.publish_benchmarks(quick_vae, readme)
    full = tmp_path / "full"
    full.mkdir()
    text = (quick_vae / "benchmarks.md").read_text().replace(benchmarks.QUICK_TITLE, "")
    (full / "benchmarks.md").write_text(text)
    with pytest.raises(DataError, match="keras_dense, keras_sparse"):
        benchmarks.publish_benchmarks(full, readme)
    assert readme.read_text() == README


def _fake_result(bench: benchmarks.Benchmark) -> dict:
    return {
        "experiment": benchmarks.experiment_of(bench),
        "train": {"epochs": 3},
        "eval": {"metrics": {bench.metric: 0.5}},
        "train_s": 120.0,
        "train_cpu_s": 230.0,
        "eval_s": 60.0,
    }


def test_a_complete_table_goes_between_the_markers_only(tmp_path: Path) -> None:
    text = benchmarks.benchmarks_markdown(
        [_fake_result(b) for b in benchmarks.BENCHMARKS], quick=False
    )
    (tmp_path / "benchmarks.md").write_text(text)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    benchmarks.publish_benchmarks(tmp_path, readme)
    page = readme.read_text()
    assert "old table" not in page and "# Benchmarks" not in page
    assert page.startswith("# project\n\n") and page.endswith("\n## after\n")
    for bench in benchmarks.BENCHMARKS:
        assert f"`ae-train experiment={bench.experiment}`" in page
    assert "89.78" in page and "Burda et al. 2015" in page and "4 CPU-min (2 min wall)" in page
    readme.write_text("# no markers\n")
    with pytest.raises(DataError, match="benchmarks:begin"):
        benchmarks.publish_benchmarks(tmp_path, readme)


def test_unknown_benchmark_is_one_line(tmp_path: Path, capsys) -> None:
    argv = ["--benchmarks", "--quick", "--only", "vae", "--out", str(tmp_path)]
    assert reproduce.main(argv) == 1
    assert "no such benchmark" in capsys.readouterr().err


def test_seeds_show_their_spread_and_finished_runs_are_reused(tmp_path: Path, capsys) -> None:
    """``--seeds 42,1``: two real runs, both numbers and their spread in the row; the same
    command again trains nothing (a reproduction can be built in parts, then published)."""
    argv = ["--benchmarks", "--quick", "--only", "keras_dense", "--seeds", "42,1"]
    argv += ["--out", str(tmp_path)]
    assert reproduce.main(argv) == 0
    runs = [tmp_path / "eval" / name for name in ("keras_dense", "keras_dense-seed1")]
    values = [read_json(run / "metrics.json")["metrics"]["test/bce"] for run in runs]
    assert values[0] != values[1]  # the seed reached the run
    row = next(
        line
        for line in (tmp_path / "benchmarks.md").read_text().splitlines()
        if line.startswith("| Dense 784-32-784")
    )
    spread = f"{abs(values[0] - values[1]):.4f}"
    assert f"(seeds 42 / 1: {values[0]:.4f} / {values[1]:.4f}; spread {spread})" in row
    checkpoint = tmp_path / "runs" / "keras_dense-seed1" / "checkpoints" / "last.ckpt"
    written = checkpoint.stat().st_mtime_ns
    capsys.readouterr()
    assert reproduce.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("reused the finished training and evaluation") == 2
    assert checkpoint.stat().st_mtime_ns == written
    assert row in (tmp_path / "benchmarks.md").read_text()
    assert reproduce.main([*argv[:-2], "--seeds", "4x", "--out", str(tmp_path)]) == 1
    assert "--seeds '4x': give integers" in capsys.readouterr().err

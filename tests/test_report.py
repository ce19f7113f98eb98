"""report.html and ae-report: real runs side by side on one page that needs no network."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aelightning.cli.report import main as ae_report
from aelightning.evaluation.runs import load_runs, varying_keys
from tests.helpers import run_cli
from tests.test_sweep import SHORT

FAST = [*SHORT, "callbacks.figures=null", "callbacks.projector=null"]


def _sweep(root: Path, name: str, *overrides: str) -> Path:
    sweep = root / name
    proc = run_cli("-m", *overrides, *FAST, f"hydra.sweep.dir={sweep}", f"paths.root_dir={root}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sweep


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr(?: class=\"\w+\")?><td>(.*?)</td>", page)


@pytest.fixture(scope="module")
def latent_sweep(tmp_path_factory) -> Path:
    return _sweep(tmp_path_factory.mktemp("runs"), "latent", "net.latent_dim=2,4")


def _assert_self_contained(page: str) -> None:
    assert "<script src" not in page and "<link" not in page
    assert "http://" not in page and "https://" not in page
    for src in re.findall(r'<img[^>]* src="([^"]+)"', page):
        assert src.startswith("data:image/png;base64,")


def test_a_sweep_writes_its_report_beside_the_summary(latent_sweep):
    page = (latent_sweep / "report.html").read_text()
    _assert_self_contained(page)
    assert _rows(page) == ["0", "1"]
    assert "Swept: <code>net.latent_dim</code>" in page
    # the per-epoch grid of the same validation images for each job, labelled by its override
    assert page.count('<figure class="card">') == 2
    assert "<b>net.latent_dim=2</b>" in page and "validation images, epoch 0" in page
    assert "<h2>Loss curves</h2>" in page
    assert "<h2>Final metrics against net.latent_dim</h2>" in page
    assert 'class="sortable"' in page and "addEventListener" in page


def test_ae_report_joins_a_sweep_and_a_single_run(latent_sweep, tmp_path, capsys):
    single = tmp_path / "run"
    figures = ["callbacks.figures.tsne_points=0", "callbacks.figures.max_points=200"]
    args = [*SHORT, "callbacks.projector=null", *figures, f"hydra.run.dir={single}"]
    proc = run_cli("model=vae", "net.latent_dim=3", *args, f"paths.root_dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "joined.html"
    assert ae_report([str(latent_sweep), str(single), "-o", str(out), "--title", "joined"]) == 0
    assert f"{out} (3 runs)" in capsys.readouterr().out
    page = out.read_text()
    _assert_self_contained(page)
    names = _rows(page)
    assert len(names) == 3 and names[0].endswith("latent/0") and names[2].endswith("run")
    runs = load_runs([latent_sweep, single])
    assert varying_keys(runs) == ["net.latent_dim", "model"]
    # the numeric axis against a line per value of the categorical one
    assert "<h2>Final metrics against net.latent_dim</h2>" in page
    # the VAE's final reconstructions of the test images and its samples, labelled
    assert page.count("<b>net.latent_dim=3 model=vae</b>") == 2
    assert "<h2>Samples</h2>" in page and "samples from the prior" in page
    assert "3 · test images" not in page and "run · test images" in page


def test_ae_report_errors_are_one_sentence(tmp_path):
    missing = subprocess.run(
        [sys.executable, "-m", "aelightning.cli.report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: no such folder: {tmp_path / 'nope'}."
    assert ae_report([str(tmp_path)]) == 2


@pytest.mark.slow
def test_ae_report_joins_two_sweeps_and_marks_the_failed_job(latent_sweep, tmp_path):
    other = _sweep(tmp_path, "acts", "net.output_activation=sigmoid,none", "net.latent_dim=2")
    failing = run_cli(
        "-m",
        "net.latent_dim=0",
        *FAST,
        f"hydra.sweep.dir={tmp_path / 'bad'}",
        f"paths.root_dir={tmp_path}",
    )
    assert failing.returncode != 0
    out = tmp_path / "report.html"
    assert ae_report([str(latent_sweep), str(other), str(tmp_path / "bad"), "-o", str(out)]) == 0
    page = out.read_text()
    assert len(_rows(page)) == 5
    assert re.search(r'<tr class="failed">.*net.latent_dim must be &gt;= 1, got 0\.', page)
    runs = load_runs([latent_sweep, other])
    assert varying_keys(runs) == ["net.latent_dim", "net.output_activation"]
    assert page.count('<figure class="card">') == 4  # the failed job has no images

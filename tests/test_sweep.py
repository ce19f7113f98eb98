"""Hydra multirun as users run it: one dir per job, a summary, failures reported."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from aelightning.cli.hparams import HPARAM_LIMIT
from aelightning.runtime import cpus as runtime
from tests.conftest import compose_config
from tests.helpers import run_cli
from tests.tbutil import read_events, session_hparams

SHORT = [
    "data.source=sample",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


def _rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _multirun(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``ae-train -m <overrides>`` with the short settings; the process and its sweep dir."""
    sweep = tmp_path / "sweep"
    args = [f"hydra.sweep.dir={sweep}", f"paths.root_dir={tmp_path}", *SHORT]
    return run_cli("-m", *overrides, *args), sweep


def test_two_by_two_multirun_gives_four_jobs_and_a_summary(tmp_path):
    proc, sweep = _multirun(tmp_path, "net.latent_dim=4,8", "noise=none,gaussian")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    rows = _rows(sweep)
    assert [r["overrides"] for r in rows] == [
        "net.latent_dim=4 noise=none",
        "net.latent_dim=4 noise=gaussian",
        "net.latent_dim=8 noise=none",
        "net.latent_dim=8 noise=gaussian",
    ]
    assert all(r["status"] == "ok" and float(r["test/loss"]) > 0 for r in rows)
    assert "| net.latent_dim=4 noise=gaussian" in (sweep / "summary.md").read_text().replace(
        "`", ""
    )
    assert (sweep / "summary.png").stat().st_size > 1000
    for job in range(4):
        for name in (".hydra/config.yaml", "metrics.json", "metrics.csv", "config_tree.txt"):
            assert (sweep / str(job) / name).is_file(), name
    # HPARAMS: the swept keys with this job's values, the axes, the final metrics beside them
    hparams = session_hparams(read_events(sweep / "3" / "tensorboard"))
    assert hparams["net.latent_dim"] == 8 and hparams["noise"] == "gaussian"
    assert hparams["noise.std"] == 0.5 and hparams["net"] == "mlp"
    assert len(hparams) <= HPARAM_LIMIT
    # the report: one row and one reconstruction card per job, the swept numeric axis plotted
    page = (sweep / "report.html").read_text()
    assert (
        page.count('<figure class="card">') == 4
        and "<b>net.latent_dim=8 noise=gaussian</b>" in page
    )
    assert "<h2>Final metrics against net.latent_dim</h2>" in page


def test_a_failing_job_is_reported_and_the_others_finish(tmp_path):
    proc, sweep = _multirun(tmp_path, "net.latent_dim=0,4")
    assert proc.returncode != 0
    assert "net.latent_dim must be >= 1" in proc.stderr
    failed, ok = _rows(sweep)
    assert failed["status"] == "failed" and "net.latent_dim must be >= 1" in failed["error"]
    assert ok["status"] == "ok" and float(ok["test/loss"]) > 0
    assert "failed: net.latent_dim must be >= 1, got 0." in (sweep / "summary.md").read_text()
    page = (sweep / "report.html").read_text()
    assert '<tr class="failed"><td>0</td>' in page
    assert "net.latent_dim must be &gt;= 1, got 0." in page


@pytest.mark.parametrize(
    ("override", "target"),
    [
        ("hydra/launcher=slurm", "SlurmLauncher"),
        ("hydra/launcher=local_parallel", "JoblibLauncher"),
        ("hydra/launcher=joblib", "JoblibLauncher"),
    ],
)
def test_launchers_compose(tmp_path, override, target):
    cfg = compose_config(tmp_path, [override])
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_sharing_the_cores(tmp_path):
    """`hydra/launcher=local_parallel`: 2 joblib jobs, a summary, each job told its share."""
    proc, sweep = _multirun(tmp_path, "hydra/launcher=local_parallel", "net.latent_dim=4,8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(sweep)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    if runtime.available_cpus() >= 2:
        for job in ("0", "1"):
            logs = " ".join(p.read_text() for p in (sweep / job).glob("*.log"))
            assert "2 parallel jobs" in logs, logs[-1000:]


@pytest.mark.parametrize(
    ("overrides", "jobs", "threads"),
    [
        (["hydra/launcher=local_parallel"], 2, 4),  # n_jobs: 2
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-1"], 8, 1),  # one job per CPU
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=-3"], 6, 1),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"], 3, 2),
        ([], 1, 8),  # the basic launcher runs one job at a time
    ],
)
def test_parallel_jobs_share_the_cores(tmp_path, monkeypatch, overrides, jobs, threads):
    """On an idle 8-CPU machine, joblib's n_jobs jobs get 8 // n_jobs torch threads each."""
    compose_config(tmp_path, [*overrides, "hydra.mode=MULTIRUN"])
    monkeypatch.setattr(runtime, "available_cpus", lambda: 8)
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 8)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert runtime.parallel_jobs() == jobs
    assert runtime.auto_cpu_threads(runtime.parallel_jobs())[0] == threads


@pytest.mark.slow
def test_ddp_on_cpu_gives_each_rank_a_disjoint_shard(tmp_path):
    import json

    shards = tmp_path / "shards"
    proc = run_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=2",
        "data.source=sample",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.root_dir={tmp_path}",
        "callbacks.rich_progress_bar=null",
        "+callbacks.shards._target_=tests.helpers.ShardRecorder",
        f"+callbacks.shards.out_dir={shards}",
        "test=false",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for epoch in (0, 1):
        seen = [
            json.loads((shards / f"rank{r}_epoch{epoch}.json").read_text())["seen"] for r in (0, 1)
        ]
        assert len(seen[0]) == len(seen[1]) == 2000  # 4,000 training digits, 2 ranks
        assert not set(seen[0]) & set(seen[1])  # disjoint
        assert len(set(seen[0]) | set(seen[1])) == 4000  # together they cover the epoch


@pytest.mark.slow
def test_optuna_search_runs_three_trials_and_reports_the_best(tmp_path):
    import yaml

    proc, sweep = _multirun(tmp_path, "hparams_search=vae_optuna", "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(sweep)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {"model.optimizer.lr", "net.latent_dim", "model.beta"}
    values = [float(r["val/neg_elbo"]) for r in rows]
    assert best["best_value"] == pytest.approx(min(values), rel=1e-5)

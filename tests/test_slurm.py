"""The cluster path end to end: a sweep through hydra-submitit-launcher's local executor (the
SLURM launcher minus ``sbatch``), and a run requeued the way SLURM requeues it: the signal SLURM
sends before the time limit (SIGUSR1), Lightning's ``scontrol requeue``, SLURM's SIGTERM, and the
same command started again continuing from ``last.ckpt``."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aelightning.checkpointing.checkpoint import load_checkpoint, resolve_ckpt_path
from tests.conftest import ROOT
from tests.test_sweep import SHORT, _rows

#: 3 epochs x 4 batches of the bundled sample, one thread, deterministic: exact comparisons
RUN = [
    "data.source=sample",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.deterministic=true",
    "runtime.cpu_threads=1",
    "noise=gaussian",
    "test=false",
    "logger=none",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.reconstructions=null",
    "callbacks.lr_monitor=null",
    "callbacks.figures=null",
    "callbacks.projector=null",
]
REQUEUE_AT_STEP = 6  # mid-epoch 2


def _cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "aelightning", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_resume_auto_starts_from_scratch_when_the_run_dir_has_no_checkpoint(make_cfg):
    assert resolve_ckpt_path(make_cfg("resume=auto")) is None


@pytest.mark.slow
def test_submitit_local_sweep_runs_both_jobs_and_writes_the_summary(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _cli(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "net.latent_dim=4,8",
            f"hydra.sweep.dir={sweep}",
            f"paths.root_dir={tmp_path}",
            *SHORT,
            "callbacks.figures=null",
            "callbacks.projector=null",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(sweep)
    assert [r["overrides"] for r in rows] == ["net.latent_dim=4", "net.latent_dim=8"]
    assert all(r["status"] == "ok" and float(r["test/loss"]) > 0 for r in rows)
    assert (sweep / "summary.md").is_file()
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    # submitit's own job folder: the pickled job and its result, as on a cluster
    assert list((sweep / ".submitit").rglob("*_result.pkl"))


def _fake_slurm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """SLURM's environment for one task of job 4242, and an ``scontrol`` on PATH that records
    its arguments and then does what SLURM does to a requeued job: SIGTERM."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.log"
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nkill -TERM "$PPID"\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "ae-train",
        "SLURM_NTASKS": "1",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    return env, calls


@pytest.mark.slow
def test_slurm_requeue_signal_saves_requeues_and_the_same_command_resumes(tmp_path):
    env, calls = _fake_slurm(tmp_path)
    run_dir = tmp_path / "run"
    command = [
        *RUN,
        f"data.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
        "resume=auto",
        # SLURM's --signal=USR1@<seconds before the limit>, at a known step
        "+callbacks.slurm_signal._target_=tests.test_resume.SignalAtStep",
        f"+callbacks.slurm_signal.step={REQUEUE_AT_STEP}",
        f"+callbacks.slurm_signal.signum={int(signal.SIGUSR1)}",
    ]
    first = _cli(command, env)
    assert first.returncode == 143, first.stderr[-3000:]  # stopped by SLURM's SIGTERM
    assert calls.read_text().split() == ["requeue", "4242"]  # Lightning requeued the job
    last = run_dir / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == REQUEUE_AT_STEP
    assert list(run_dir.glob("hpc_ckpt_*.ckpt"))  # Lightning's own save on the signal
    assert "training stopped by SIGTERM" in first.stderr

    again = _cli(command, env)  # SLURM starts the requeued job: the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Resuming from" in again.stdout + again.stderr
    assert load_checkpoint(last)["global_step"] == 12

    reference = tmp_path / "reference"
    plain = _cli([*RUN, f"data.data_dir={tmp_path / 'data'}", f"hydra.run.dir={reference}"])
    assert plain.returncode == 0, plain.stderr[-3000:]
    resumed = load_checkpoint(last)["state_dict"]
    expected = load_checkpoint(reference / "checkpoints" / "last.ckpt")["state_dict"]
    assert resumed.keys() == expected.keys()
    assert all(torch.allclose(resumed[k], expected[k], atol=1e-6, rtol=0) for k in expected)

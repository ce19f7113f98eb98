"""How many CPUs a run may use: the affinity mask, a container's quota, the jobs beside it.

Shared by the trainer's thread choice and the image decoder's process pool.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

_CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (
    Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
    Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota else cpus)


def _cgroup_cpu_quota() -> float | None:
    """The container's CPU limit in CPUs (e.g. 1.5), or None when there is none."""
    try:
        if _CGROUP_V2_MAX.is_file():
            quota, period = _CGROUP_V2_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota_file, period_file = _CGROUP_V1
        if quota_file.is_file() and period_file.is_file():
            quota_us = int(quota_file.read_text())
            return None if quota_us <= 0 else quota_us / int(period_file.read_text())
    except (OSError, ValueError):
        return None
    return None


def auto_cpu_threads(parallel_jobs: int = 1) -> tuple[int, str]:
    """Intra-op threads for CPU training and why: this job's share of the CPUs that are idle.

    torch's default is one thread per physical core of the host, even in a container limited
    to fewer, and its OpenMP threads spin-wait for each other: on cores that other processes
    keep busy a step gets several times slower (a 784-256-64-20 AE at batch 32 ran 5x slower
    with 2 threads than with 1 on a 2-core machine at load 10). So take the CPUs this process
    may use divided by the jobs launched beside it (the load average lags a minute behind jobs
    that start together), minus those the 1-minute load average says are busy, at least one.
    """
    cpus = min(available_cpus(), torch.get_num_threads())
    share = max(1, cpus // max(1, parallel_jobs))
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    threads = max(1, min(share, cpus - math.floor(load)))
    why = f"{cpus} CPU(s) available, load average {load:.1f}"
    if parallel_jobs > 1:
        why += f", {parallel_jobs} parallel jobs"
    return threads, why


def parallel_jobs() -> int:
    """How many jobs of this Hydra multirun share the machine: joblib's ``n_jobs``, else 1.

    ``n_jobs`` follows joblib: -1 means one job per CPU, -2 all CPUs but one, and so on.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return 1
    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.get("launcher") or {}
    if hydra_cfg.mode != RunMode.MULTIRUN or "Joblib" not in str(launcher.get("_target_", "")):
        return 1
    n_jobs = launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    cpus = available_cpus()
    if n_jobs < 0:
        return max(1, cpus + 1 + int(n_jobs))
    return max(1, min(int(n_jobs), cpus))

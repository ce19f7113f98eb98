"""Test-only pieces that real runs load by `_target_` (e.g. from a subprocess CLI run)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m aelightning ARGS`` the way a user does (no HYDRA_FULL_ERROR)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "aelightning", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_if(min_gpus: int = 0, bf16: bool = False) -> pytest.MarkDecorator:
    """Skip a test on machines without the hardware it needs, saying which (like
    lightning-hydra-template's ``RunIf``): ``@run_if(min_gpus=2)``, ``@run_if(bf16=True)``."""
    found = torch.cuda.device_count()
    reasons = []
    if found < min_gpus:
        reasons.append(f"needs {min_gpus} CUDA GPU{'s' * (min_gpus > 1)}, found {found}")
    if bf16 and not (found and torch.cuda.is_bf16_supported()):
        reasons.append("needs a CUDA GPU with bfloat16 support")
    return pytest.mark.skipif(bool(reasons), reason="; ".join(reasons))


class ShardRecorder(L.Callback):
    """Record a hash of every training image each rank sees, one JSON file per rank."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.seen: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        images = batch[0].detach().cpu()
        self.seen += [hashlib.sha1(img.numpy().tobytes()).hexdigest() for img in images]

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        path.write_text(json.dumps({"world_size": trainer.world_size, "seen": self.seen}))
        self.seen = []

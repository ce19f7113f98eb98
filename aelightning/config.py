"""Where the Hydra configs live: ``conf/`` beside the package (a source checkout or an
editable install), shared by every entry point, the benchmark and the tests; and the
resolvers they use (registered when the package is imported)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# `trainer.benchmark: ${not:${.deterministic}}`: the cuDNN autotuner unless deterministic
if not OmegaConf.has_resolver("not"):
    OmegaConf.register_new_resolver("not", lambda value: not value)

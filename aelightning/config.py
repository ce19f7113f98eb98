"""Where the Hydra configs live: ``conf/`` beside the package (a source checkout or an
editable install), shared by every entry point, the benchmark and the tests."""

from __future__ import annotations

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

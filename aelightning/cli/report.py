"""``ae-report RUN_OR_SWEEP_DIR...``: one report.html for any set of runs.

Sweeps from different days, single runs, or a whole ``outputs/`` folder side by side (the page
of :mod:`aelightning.evaluation.report`, the same one every multirun writes beside its
``summary.csv``). One folder: the page goes into it; several: ``./report.html``; or ``-o PATH``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aelightning.evaluation.report import REPORT_FILE, write_report
from aelightning.evaluation.runs import find_run_dirs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="ae-report",
        description="Compare ae-train runs on one self-contained HTML page.",
    )
    parser.add_argument(
        "dirs", nargs="+", type=Path, help="run dirs, sweep dirs or folders of them"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help=f"the page (default: DIR/{REPORT_FILE} for one DIR, ./{REPORT_FILE} for several)",
    )
    parser.add_argument("--title", help="the page's heading (default: the folders given)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        print(f"error: no such folder: {', '.join(missing)}.", file=sys.stderr)
        return 2
    runs = find_run_dirs(args.dirs)
    if not runs:
        print(
            f"error: no ae-train run (a folder with .hydra/config.yaml) under "
            f"{', '.join(map(str, args.dirs))}.",
            file=sys.stderr,
        )
        return 2
    out = args.output or (args.dirs[0] / REPORT_FILE if len(args.dirs) == 1 else Path(REPORT_FILE))
    path = write_report(args.dirs, out, args.title)
    print(f"{path} ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

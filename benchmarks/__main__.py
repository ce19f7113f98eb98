"""``python -m benchmarks`` (``make bench``)."""

from benchmarks.cli import main

main()

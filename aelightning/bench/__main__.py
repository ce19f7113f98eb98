"""``python -m aelightning.bench`` (``make bench``)."""

from aelightning.bench.cli import main

main()

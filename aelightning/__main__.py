"""``python -m aelightning`` is ``ae-train``."""

from aelightning.cli.train import main

if __name__ == "__main__":
    main()

"""``python -m aelightning`` is ``ae-train``."""

from aelightning.train import main

if __name__ == "__main__":
    main()

"""``make bench``: the framework beside the seeds' training loop and beside the hardware's limit.

For each case (model, batch size, data) three ways of training the same net with the same
optimiser on the same samples are timed, alternating, several repeats, medians reported:

- **(a) framework**: a real ``Trainer.fit`` composed from ``conf/train.yaml`` exactly as
  ``ae-train`` does (progress bar, TensorBoard logger, checkpoints, figures as a user has them);
  the clock covers each training epoch up to its validation.
- **(b) seeds**: the seeds' loop: ``torchvision.datasets.MNIST`` over the same IDX files (for
  images: PIL + ``Resize`` + ``ToTensor``), ``DataLoader(shuffle=True)``, ``optim.Adam(lr=1e-3)``,
  ``nn.MSELoss``, plain PyTorch; in a fresh process with torch's defaults, as the seeds' script
  runs (same number of threads).
- **(c) limit**: the least a training loop can do: one float tensor already on the device,
  a permutation per epoch, slices, and the framework's own optimiser and runtime settings, so
  that (a)/(c) is the framework's overhead alone.

The first epoch of every run is warm-up and not timed. A profiler run per case splits a step
into data / forward / backward / optimiser / framework overhead. Scaling tables: throughput vs
batch size and vs image size, memory vs dataset size. Output: ``bench.json`` and ``bench.md``.

Run ``python -m benchmarks --help``; ``--quick`` is the small version the tests use.
"""

from benchmarks.cases import CASES, FRAMEWORK_WAYS, FULL, LETTER, METHODS, QUICK, Case, Plan
from benchmarks.cli import main, options_from, parse_args
from benchmarks.clock import EpochClock, framework_parts
from benchmarks.data import BenchData, mnist_source, prepare_mnist, tile
from benchmarks.measure import Run
from benchmarks.runner import Bench, Options, run
from benchmarks.ways import (
    SeedsJob,
    run_framework,
    run_limit,
    run_seeds,
    run_seeds_apart,
    train_epochs,
)

__all__ = [
    "CASES",
    "FRAMEWORK_WAYS",
    "FULL",
    "LETTER",
    "METHODS",
    "QUICK",
    "Bench",
    "BenchData",
    "Case",
    "EpochClock",
    "Options",
    "Plan",
    "Run",
    "SeedsJob",
    "framework_parts",
    "main",
    "mnist_source",
    "options_from",
    "parse_args",
    "prepare_mnist",
    "run",
    "run_framework",
    "run_limit",
    "run_seeds",
    "run_seeds_apart",
    "tile",
    "train_epochs",
]

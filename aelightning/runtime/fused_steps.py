"""Several optimiser steps per Lightning step (``runtime.steps_per_call``), same results.

Lightning's loop costs a fixed ~1.5-2.5 ms of Python per training step on a CPU (hooks, progress
counters, result collection, logging checks), whatever the batch: a third or more of a small
MLP's step. With ``steps_per_call: K`` (or ``auto``) one Lightning step takes up to K
consecutive batches from the in-memory loader (:class:`~aelightning.data.loader.BatchGroup`)
and runs a full optimiser step for each (forward, loss, backward, clip, step, LR-scheduler
step) through manual optimisation, so that machinery runs once per group.

What stays exactly as with K=1 (tested in ``tests/test_fused_steps.py``):

- **the weights**: the same operations on the same batches in the same order (CPU, fixed seed);
- **every count**: between two fused steps the loop's counters move as Lightning's loop moves
  them (:class:`~aelightning.runtime.lightning_compat.BatchCounters`), so
  ``trainer.global_step``, the batch index, the progress bar and the loggers' step axis count
  optimiser steps, and ``max_steps`` is never overshot;
- **every step where the per-step machinery acts ends a group** ("trigger" steps: the
  loggers' ``log_every_n_steps`` writes, validation (``val_check_interval``), checkpoints
  every ``every_n_train_steps`` (``ModelCheckpoint`` and ``ResumeCheckpoint``), the divergence
  guard's checks, ``max_steps``, the epoch's last batch) and gets the ``on_train_batch_start``
  hooks with its own batch and index, so loggers, ``LearningRateMonitor``, checkpoints and a
  mid-epoch resume see what they see with K=1.

What differs: steps that are no trigger run without the per-batch callback hooks (that is the
saving); a callback's ``on_train_batch_end`` after a group receives the group
(:class:`BatchGroup`) and the group's first index; a group reaches the training step with its
images as loaded (uint8: each batch is converted just before its step, where the floats are
still in cache) and leaves it holding the converted batches; Ctrl-C, SIGTERM and the
time-based ``val_check_interval`` / ``train_time_interval`` act at the end of the group.

Each optimiser step's backward and update go through
:class:`~aelightning.runtime.lightning_compat.LeanManualSteps` where that is exactly what
Lightning's ``manual_backward`` / ``optimizer.step`` do (one device, 32-bit or bf16, no
profiler: :func:`~aelightning.runtime.lightning_compat.why_manual_steps_cannot_be_lean`);
Lightning's own calls otherwise.

Off (K=1, with a log line) where the guarantees cannot hold: gradient accumulation
(``trainer.accumulate_grad_batches > 1``: Lightning does not accumulate under manual
optimisation), fp16 mixed precision with gradient clipping (the loss scaler unscales only
inside the optimiser step), and a train loader other than the in-memory one. LR schedulers
that step per epoch or on a plateau (none of ``conf/model/scheduler``) are a ConfigError.

``auto`` measures over the first groups (of up to :data:`PROBE` steps) the optimiser step's own
time ``s`` (inside the training step) and Lightning's time per call ``c`` (around it: from the
loader's request for a group to the training step, and from its end to the next request),
and picks the smallest K with ``c / (K s) <= SHARE`` (1 for a large model, whose step dwarfs
``c``), at most :data:`MAX_K`. The results do not depend on K.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L

from aelightning.errors import ConfigError
from aelightning.runtime.lightning_compat import (
    LeanManualSteps,
    batches_that_stepped,
    checkpoint_every_n_train_steps,
    why_manual_steps_cannot_be_lean,
)

log = logging.getLogger("aelightning")

#: the largest group ``auto`` picks (the groups end at every trigger step anyway)
MAX_K = 64
#: Lightning's share of the training time ``auto`` aims for
SHARE = 0.01
#: group size while ``auto`` measures
PROBE = 8
#: Lightning steps ``auto`` ignores at the start (first-call costs), then times
WARMUP_CALLS, TIMED_CALLS = 3, 12


@dataclass
class _Periods:
    """When the per-step machinery acts, read from the trainer and its callbacks."""

    batch: list[int] = field(default_factory=list)  # (fit batch index + 1) % n == 0
    logged: int = 0  # (logger step + 1) % n == 0
    optimizer: list[int] = field(default_factory=list)  # global_step % n == 0 after the step
    val_batches: int = 0  # (val counter + 1) % n == 0
    val_over_fit: bool = False  # the val counter runs over the whole fit, not the epoch
    epoch_batches: int = 0
    max_steps: int = -1
    steps_per_batch: int = 1  # optimiser steps each batch makes (the AAE: 3)


def _periods(trainer: L.Trainer) -> _Periods:
    periods = _Periods(
        logged=int(trainer.log_every_n_steps or 0),
        epoch_batches=int(trainer.num_training_batches)
        if math.isfinite(trainer.num_training_batches)
        else 0,
        max_steps=int(trainer.max_steps),
        steps_per_batch=max(1, len(trainer.optimizers)),
        val_over_fit=trainer.check_val_every_n_epoch is None,
    )
    val = trainer.val_check_batch
    if isinstance(val, int) or (isinstance(val, float) and math.isfinite(val)):
        periods.val_batches = int(val)
    for callback in trainer.callbacks:
        every = checkpoint_every_n_train_steps(callback) or getattr(
            callback, "every_n_train_steps", 0
        )
        if isinstance(every, int) and every > 0:
            periods.optimizer.append(every)
        check = getattr(callback, "check_every_n_steps", 0)  # the divergence guard
        if isinstance(check, int) and check > 0:
            periods.batch.append(check)
    return periods


def _steps_to(counter: int, period: int) -> int:
    """How many steps after the current one the next step with ``(counter + 1) % period == 0``
    comes (0: the current one)."""
    return (-(counter + 1)) % period


class FusedSteps:
    """Plans the groups of one fit and, for ``auto``, measures K (see the module docstring).

    Args:
        steps_per_call: K, or None for ``auto``.
        clip: ``(gradient_clip_val, gradient_clip_algorithm)`` taken off the trainer (which
            refuses clipping under manual optimisation) and applied by the module, or None.
    """

    def __init__(self, steps_per_call: int | None, clip: tuple[float, str] | None = None) -> None:
        self.requested = steps_per_call
        self.clip = clip
        self.k = steps_per_call or 1
        self._trainer: L.Trainer | None = None
        self._loader: Any = None
        self._periods = _Periods()
        self._clock = _AutoClock() if steps_per_call is None else None
        #: each optimiser step's backward and update without Lightning's call chain, where
        #: that is exactly what the chain does (else None: the module calls Lightning's)
        self.lean: LeanManualSteps | None = None
        #: looked up once per fit: the module's optimiser (None when it has several) and its
        #: LR schedulers with their frequencies (all stepped per optimiser step)
        self.optimizer: Any = None
        self.schedulers: list[tuple[Any, int]] = []

    # ------------------------------------------------------------------------- lifecycle
    def attach(self, trainer: L.Trainer) -> None:
        """At the fit's start: read when the machinery acts, hand the loader the planner."""
        loader = trainer.train_dataloader
        self._trainer, self._periods = trainer, _periods(trainer)
        self.k = self.requested or PROBE
        if self.requested is None:
            self._clock = _AutoClock()
        optimizers = trainer.lightning_module.optimizers()
        self.optimizer = None if isinstance(optimizers, list) else optimizers
        self.schedulers = [(c.scheduler, c.frequency) for c in trainer.lr_scheduler_configs]
        why_not = why_manual_steps_cannot_be_lean(trainer)
        self.lean = LeanManualSteps(trainer) if why_not is None else None
        if why_not is not None:
            log.debug("runtime.steps_per_call: Lightning's manual_backward and step: %s.", why_not)
        if any(c.interval != "step" or c.reduce_on_plateau for c in trainer.lr_scheduler_configs):
            raise ConfigError(
                "runtime.steps_per_call supports LR schedulers stepped per optimiser step only; "
                "set runtime.steps_per_call=1 for one stepped per epoch or on a plateau."
            )
        if not hasattr(loader, "group_size"):
            log.warning(
                "runtime.steps_per_call: one optimiser step per Lightning step (the train loader "
                "is a %s, not the in-memory one).",
                type(loader).__name__,
            )
            return
        self._loader = loader
        loader.group_size = self.next_group_size

    def detach(self) -> None:
        if self._loader is not None:
            self._loader.group_size = None
        self._loader = self._trainer = self.lean = self.optimizer = None
        self.schedulers = []

    # ---------------------------------------------------------------------------- groups
    def next_group_size(self) -> int:
        """How many batches the next Lightning step takes: up to K, ending at the first
        trigger step (called by the loader before it builds the group)."""
        if self._clock is not None:
            self._clock.requested()
        return self._plan()

    def group_started(self) -> None:
        """The module's training step begins (``auto`` times Lightning around it)."""
        if self._clock is not None:
            self._clock.started()

    def group_finished(self, size: int) -> None:
        """The module's training step ran ``size`` optimiser steps."""
        if self._clock is not None and self._clock.finished(size):
            self.k, self._clock = self._clock.choose(), None

    def _plan(self) -> int:
        trainer, p = self._trainer, self._periods
        if trainer is None or self.k == 1:
            return 1
        progress = trainer.fit_loop.epoch_loop.batch_progress
        fit_batch, epoch_batch = progress.total.ready, progress.current.ready
        candidates = [self.k - 1]
        candidates += [_steps_to(fit_batch, n) for n in p.batch]
        if p.logged:
            candidates.append(_steps_to(batches_that_stepped(trainer), p.logged))
        if p.val_batches:
            counter = fit_batch if p.val_over_fit else epoch_batch
            candidates.append(_steps_to(counter, p.val_batches))
        if p.epoch_batches:
            candidates.append(p.epoch_batches - epoch_batch - 1)
        step, m = trainer.global_step, p.steps_per_batch
        if p.max_steps >= 0:
            candidates.append(max(0, math.ceil((p.max_steps - step) / m) - 1))
        limit = min(candidates)
        for every in p.optimizer:
            limit = min(
                limit, next((i for i in range(limit) if (step + m * (i + 1)) % every == 0), limit)
            )
        return max(1, limit + 1)


class _AutoClock:
    """``auto``'s measurement over the first groups: the optimiser steps' own time and
    Lightning's time around each group (from the loader's request for the group to the
    training step, and from its end to the next request), medians after a warm-up."""

    def __init__(self) -> None:
        self.step_s: list[float] = []  # per optimiser step, inside the training step
        self.lightning_s: list[float] = []  # per Lightning step, outside it
        self._requested = self._started = self._finished = 0.0
        self._after: float | None = None  # from the previous group's end to this request

    def requested(self) -> None:
        self._requested = time.perf_counter()
        if self._finished:
            self._after = self._requested - self._finished

    def started(self) -> None:
        self._started = time.perf_counter()

    def finished(self, size: int) -> bool:
        """Record a group; True once enough groups were timed."""
        self._finished = time.perf_counter()
        if self._requested and self._started and self._after is not None:
            self.step_s.append((self._finished - self._started) / size)
            self.lightning_s.append(self._started - self._requested + self._after)
        return len(self.step_s) >= WARMUP_CALLS + TIMED_CALLS

    def choose(self) -> int:
        step = max(statistics.median(self.step_s[WARMUP_CALLS:]), 1e-7)
        call = statistics.median(self.lightning_s[WARMUP_CALLS:])
        k = min(MAX_K, max(1, math.ceil(call / (SHARE * step))))
        log.info(
            "runtime.steps_per_call=auto: optimiser step %.3f ms, Lightning %.3f ms per call: "
            "%d step(s) per call",
            step * 1e3,
            call * 1e3,
            k,
        )
        return k


def parse_steps_per_call(value: Any) -> int | None:
    """``auto`` -> None (measure), else the integer K (validated by the config schema)."""
    return None if value == "auto" else int(value)


def fused_steps_for(
    module: L.LightningModule, trainer: L.Trainer, steps_per_call: int | None
) -> FusedSteps | None:
    """The planner for ``module`` when steps can be fused in this trainer, else None (the
    log says why). Takes gradient clipping off the trainer for modules that Lightning
    optimises automatically: they switch to manual optimisation and clip themselves."""
    if steps_per_call == 1 or not hasattr(module, "optimization_step"):
        return None
    reason = None
    clip_val = trainer.gradient_clip_val
    if trainer.accumulate_grad_batches != 1:
        reason = "trainer.accumulate_grad_batches > 1 (Lightning accumulates only automatically)"
    elif clip_val and str(trainer.precision).startswith("16"):
        reason = "fp16 with trainer.gradient_clip_val (its loss scaler unscales in the step)"
    if reason is not None:
        log.warning(
            "runtime.steps_per_call: off, one optimiser step per Lightning step: %s.", reason
        )
        return None
    clip = None
    if module.automatic_optimization:
        if clip_val:
            clip = (float(clip_val), trainer.gradient_clip_algorithm)
            trainer.gradient_clip_val = None
        module.automatic_optimization = False
    return FusedSteps(steps_per_call, clip)

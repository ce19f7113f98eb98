"""Make a run resumable at any moment, exactly: ``last.ckpt`` kept current and the RNG saved.

``ModelCheckpoint(monitor=..., save_last=True)`` refreshes ``last.ckpt`` only when the monitored
metric improves (Lightning 2.6: "only save last checkpoint if a checkpoint was actually saved in
this step"), so after a non-improving epoch it is not the latest state. :class:`ResumeCheckpoint`
keeps it current and adds what exact resumption needs:

* **epoch-end saves** of ``last.ckpt`` after every validation (or at the epoch's end when none
  ran), at the same point ``ModelCheckpoint`` saves;
* **mid-epoch saves** every ``every_n_train_steps`` optimizer steps into the same ``last.ckpt``
  (the batch loader stores its position, so the resumed run continues at the next batch);
* **a save on Ctrl-C or SIGTERM**: the first Ctrl-C asks the run to stop after the current step
  (a second one quits at once, saving nothing); SIGTERM is handled the same way by Lightning.
  Stopping at a step boundary keeps weights, optimizer state and loader position consistent;
* **the RNG state** (torch CPU and CUDA, numpy, Python) in every checkpoint, restored when
  training restarts, so noise and dropout draw the same numbers as in an uninterrupted run.
  Lightning does not save RNG state itself.

The training entry point turns the stop into :class:`TrainingInterrupted` (exit 130 for Ctrl-C,
143 for SIGTERM), whose message says how to continue: ``ae-train resume=true
hydra.run.dir=<run dir>`` with the run's overrides.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from aelightning.errors import AELightningError, check
from aelightning.loggers import flush_loggers
from aelightning.runtime.lightning_compat import load_pending_loader_states

log = logging.getLogger("aelightning")

KEY = "callbacks.resume_checkpoint"
#: exit status of a run stopped by a signal, as a shell reports it (128 + signal number)
EXIT_CODES = {"Ctrl-C": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}


class TrainingInterrupted(AELightningError):
    """The run was stopped on request; ``exit_code`` is the conventional 128 + signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# ------------------------------------------------------------------------------------- RNG
def collect_rng_state() -> dict[str, Any]:
    """Every global generator's state as tensors and plain numbers (weights-only loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_state` (CUDA states only onto the same number of GPUs)."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    elif cuda:
        log.warning("the checkpoint's CUDA RNG state is for another GPU count; not restored")


# -------------------------------------------------------------------------------- callback
class ResumeCheckpoint(L.Callback):
    """Keep ``<dirpath>/last.ckpt`` the latest state: at every epoch end, every n steps, on stop.

    Args:
        dirpath: the run's checkpoint folder (the one ``ModelCheckpoint`` writes ``last.ckpt``
            to); default ``<default_root_dir>/checkpoints``.
        every_n_train_steps: also save every n optimizer steps inside an epoch; 0: only at epoch
            ends and on stop requests.
        save_on_interrupt: save ``last.ckpt`` when Ctrl-C or SIGTERM stops the run.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every_n_train_steps: int = 0,
        save_on_interrupt: bool = True,
    ) -> None:
        check(
            isinstance(every_n_train_steps, int)
            and not isinstance(every_n_train_steps, bool)
            and every_n_train_steps >= 0,
            f"{KEY}.every_n_train_steps must be an integer >= 0 (0 = only at epoch ends and on "
            f"Ctrl-C/SIGTERM), got {every_n_train_steps!r}.",
        )
        self.dirpath = dirpath
        self.every_n_train_steps = every_n_train_steps
        self.save_on_interrupt = bool(save_on_interrupt)
        #: "Ctrl-C" or "SIGTERM" once a stop was requested during training
        self.stop_reason: str | None = None
        #: the checkpoint written when the run stopped, if any
        self.saved_on_stop: str | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self._previous_sigint: Any = None
        self._saved_step = -1  # global step of this callback's latest save

    @property
    def last_path(self) -> str:
        return os.path.join(str(self.dirpath), "last.ckpt")

    # ------------------------------------------------------------------------- lifecycle
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        self.dirpath = trainer.strategy.broadcast(self.dirpath)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": collect_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # applied in on_train_start: after the restore, nothing else may draw numbers first
        self._rng_to_restore = state_dict.get("rng")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _load_pending_loader_states(trainer)
        if self._rng_to_restore is not None:
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        self.stop_reason = self.saved_on_stop = None
        self._install_sigint_handler()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.stop_reason == "Ctrl-C":
            raise KeyboardInterrupt  # at a step boundary; Lightning calls on_exception
        n = self.every_n_train_steps
        if (
            n
            and trainer.global_step % n == 0
            and self._may_save(trainer)
            # the epoch-end save follows right after validation; a save before it would make a
            # resume skip that validation
            and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        ):
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._may_save(trainer):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_step != trainer.global_step and self._may_save(trainer):
            self.save(trainer)  # no validation ran at this epoch's end

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint_handler()
        if self.stop_reason == "Ctrl-C":  # pressed during the last validation: skip the test
            raise KeyboardInterrupt

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_sigint_handler()
        if isinstance(exception, SIGTERMException):
            self.stop_reason = "SIGTERM"
        graceful = isinstance(exception, SIGTERMException) or (
            isinstance(exception, KeyboardInterrupt) and self.stop_reason == "Ctrl-C"
        )
        if isinstance(exception, KeyboardInterrupt) and self.stop_reason is None:
            self.stop_reason = "Ctrl-C"  # a KeyboardInterrupt outside our handler: mid-step
        if not (graceful and self.save_on_interrupt) or not self._may_save(trainer):
            return
        try:
            self.save(trainer)
        except AELightningError as exc:  # e.g. the divergence guard refusing non-finite weights
            log.warning("not saving on stop: %s", exc)
            return
        self.saved_on_stop = self.last_path
        log.warning("%s: saved the current state to %s", self.stop_reason, self.last_path)

    # ------------------------------------------------------------------------------ save
    def save(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` now; a ``ModelCheckpoint`` sharing the folder keeps using it."""
        path = self.last_path
        for callback in trainer.checkpoint_callbacks:
            if (
                isinstance(callback, ModelCheckpoint)
                and callback.save_last
                and callback.dirpath is not None
                and Path(callback.dirpath).resolve() == Path(str(self.dirpath)).resolve()
            ):
                # it would otherwise write last-v1.ckpt next to "someone else's" last.ckpt
                callback.last_model_path = os.path.join(callback.dirpath, "last.ckpt")
        # the full state (optimiser, loops, callbacks): what an exact resume needs
        trainer.save_checkpoint(path, weights_only=False)
        self._saved_step = trainer.global_step
        flush_loggers(trainer)  # the logs hold every step the checkpoint holds

    @staticmethod
    def _may_save(trainer: L.Trainer) -> bool:
        return (
            trainer.state.fn == "fit"
            and not trainer.sanity_checking
            and not trainer.fast_dev_run
            and trainer.global_step > 0
        )

    # --------------------------------------------------------------------------- signals
    def _install_sigint_handler(self) -> None:
        """First Ctrl-C: stop at the end of this step and save; second: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            return  # SIGINT ignored (background job) or handled by someone else: leave it
        self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_sigint_handler(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is (
            threading.main_thread()
        ):
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_reason is None:
            self.stop_reason = "Ctrl-C"
            log.warning("Ctrl-C: stopping after this step and saving last.ckpt (again: quit now)")
            return
        self._restore_sigint_handler()
        self.stop_reason = "Ctrl-C (forced)"
        raise KeyboardInterrupt


def _load_pending_loader_states(trainer: L.Trainer) -> None:
    """Hand the train loader its saved mid-epoch position if Lightning did not (issue #20550).

    When ``configure_optimizers`` reads ``trainer.estimated_stepping_batches`` (every LR schedule
    here does), Lightning builds the train loader before it restores the checkpoint and then
    never loads the loader's saved state: the resumed run would redo the epoch from its first
    batch. The loader here starts iterating lazily, so loading the state before the first batch
    is still in time. Once Lightning fixes this, nothing is pending here and this does nothing.
    """
    load_pending_loader_states(trainer.fit_loop)


def interrupted_error(trainer: L.Trainer, exc: BaseException, run_dir: str) -> BaseException:
    """The :class:`TrainingInterrupted` to report for a fit that Ctrl-C / SIGTERM stopped.

    Lightning ends a fit on Ctrl-C with ``sys.exit(1)`` and on SIGTERM with
    :class:`SIGTERMException`; any other ``SystemExit`` is returned unchanged.
    """
    saver = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None)
    reason = saver.stop_reason if saver is not None else None
    if isinstance(exc, SIGTERMException) or trainer.received_sigterm:
        reason = "SIGTERM"
    if reason is None and not isinstance(exc, KeyboardInterrupt) and not trainer.interrupted:
        return exc
    reason = reason or "Ctrl-C"
    code = EXIT_CODES["SIGTERM" if reason == "SIGTERM" else "Ctrl-C"]
    if trainer.state.fn != "fit":  # stopped while testing: the fit itself had finished
        return TrainingInterrupted(
            f"testing stopped by {reason}; training had finished and its checkpoints are in "
            f"{run_dir}/checkpoints.",
            code,
        )
    where = f"at step {trainer.global_step} (epoch {trainer.current_epoch})"
    if saver is not None and saver.saved_on_stop:
        kept = (
            f"saved '{saver.saved_on_stop}'; continue with: ae-train resume=true "
            f"hydra.run.dir={run_dir} plus the run's other overrides"
        )
    else:
        kept = "nothing was saved at the stop (a forced stop, or callbacks.resume_checkpoint off)"
    return TrainingInterrupted(f"training stopped by {reason} {where}; {kept}.", code)

"""The loop's own duties as callbacks (DESIGN.md: everything cross-cutting is a callback): evaluation every
`training.eval_interval` steps, preemption signals (SIGTERM/SIGUSR1 → save and exit 75; SIGINT → save and exit 130), and checkpoints every
`checkpoint.save_interval` steps plus one at the end. `Trainer` appends them after the caller's callbacks, in
this order, so a stop requested by diagnostics or a signal is saved by the checkpoint callback of the same step.
Their time is the loop's work, not callback overhead: it is excluded from `TrainResult.callback_seconds`.
"""

from __future__ import annotations

import time

from .callbacks import Callback, Control, StepRecord
from .signals import PREEMPTED_EXIT, PreemptionHandler
from .step import all_reduce_max


class _Timed(Callback):
    def on_step_end(self, trainer, record: StepRecord, control: Control) -> None:
        start = time.perf_counter()
        self.step_end(trainer, record, control)
        trainer.loop_seconds += time.perf_counter() - start

    def step_end(self, trainer, record: StepRecord, control: Control) -> None: ...


class EvaluationCallback(_Timed):
    def step_end(self, trainer, record, control):
        interval = trainer.cfg.training.eval_interval
        if interval and trainer.step % interval == 0:
            trainer.evaluate()


class PreemptionCallback(_Timed):
    def __init__(self):
        self.handler = PreemptionHandler()

    def on_train_start(self, trainer):
        self.handler.install()

    def step_end(self, trainer, record, control):
        if self.handler.should_stop(all_reduce_max):
            if self.handler.exit_code == PREEMPTED_EXIT:
                reason = f"received {self.handler.signal_name}: saved and exiting for requeue"
            else:                          # Ctrl-C: saved too, but the user, not a scheduler, resumes
                saved = "" if trainer.cfg.checkpoint.dir else " (nothing saved: no checkpoint.dir)"
                reason = f"received {self.handler.signal_name}: saved step {trainer.step}{saved}; continue with --resume auto"
            control.request_stop(reason, exit_code=self.handler.exit_code, save=True)

    def on_train_end(self, trainer):
        self.handler.uninstall()


class CheckpointCallback(_Timed):
    def step_end(self, trainer, record, control):
        c = trainer.cfg.checkpoint
        if c.dir and (control.save or (trainer.step % c.save_interval == 0 and not control.stop)):
            trainer.save()

    def on_train_complete(self, trainer):
        c = trainer.cfg.checkpoint
        if c.dir and trainer.step % c.save_interval != 0:
            trainer.save()                                    # always leave the final state behind

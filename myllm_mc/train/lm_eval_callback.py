"""lm-evaluation-harness tasks while a model trains: `training.eval_lm_eval` (tasks or groups lm_eval knows, e.g.
data/lm_eval's `myllm_local`), `training.eval_lm_eval_limit` (first N documents of each), scored at the start,
every `training.eval_interval` steps and at the end of pretraining, SFT or DPO.

The backend is `myllm eval --lm-eval`'s (`evaluate.lm_eval_backend.MyllmLM.from_loaded`, run by `LmEvalRun`) on the
trainer's own model chunk, unwrapped from DDP: no checkpoint round trip, no weight copy; batch 8 as `myllm eval`'s
default, so the figure at the last step is the one `myllm eval --lm-eval` gives on the checkpoint saved there.
Rank 0 runs it alone (the layout check keeps the whole model on every rank: no tensor, pipeline or expert
parallelism) and broadcasts the figures; every rank reports them through `on_eval_end`, so the `[valid]` lines,
metrics.jsonl, TensorBoard, W&B/MLflow and a `loss.png` panel carry `lm_eval/<task>/<metric>`.

lm_eval seeds Python's, NumPy's and torch's generators (`simple_evaluate`'s 0/1234/1234); they are put back
afterwards, so a run with lm-eval draws the same random numbers (dropout, sampling) as one without.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from myllm_mc.evaluate.lm_eval_run import BATCH_SIZE, LmEvalRun, training_metrics
from myllm_mc.parallel.hardware import cuda_available

from .task_eval import ScheduledEvaluation


@contextmanager
def kept_random_state():
    """Python, NumPy, torch CPU (and CUDA) generator states restored on exit."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if cuda_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class LmEvalCallback(ScheduledEvaluation):
    def __init__(self, cfg, tokenizer, run: LmEvalRun | None, interval: int, total_steps: int):
        """`run` on rank 0 (`evaluate.lm_eval_run.training_lm_eval(cfg)`), None on the ranks that only wait."""
        super().__init__(interval, total_steps)
        self.cfg, self.tokenizer, self.run, self.lm = cfg, tokenizer, run, None

    def on_train_start(self, trainer):
        if trainer.step == 0:                  # a resumed run was scored at its last interval already
            self._evaluate(trainer)

    def _evaluate(self, trainer):
        metrics = None
        if self.run is not None:
            metrics = training_metrics(self._figures(trainer))
        if dist.is_initialized() and dist.get_world_size() > 1:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)
            metrics = box[0]
        trainer.callbacks.on_eval_end(trainer, trainer.step, metrics)

    def _figures(self, trainer) -> dict:
        from myllm_mc.evaluate.lm_eval_backend import MyllmLM

        chunk = trainer.model[0].module                    # DDP → Float16Module or GPTModel: the same weights
        if self.lm is None:                                # one backend (and KV-cache generator) for the run
            self.lm = MyllmLM.from_loaded(chunk, self.tokenizer, self.cfg, batch_size=BATCH_SIZE)
        for model in trainer.model:
            model.eval()
        try:
            with kept_random_state():
                return self.run.run_lm(self.lm)
        finally:
            for model in trainer.model:
                model.train()


def lm_eval_callbacks(cfg) -> list:
    """[LmEvalCallback] for a config with `training.eval_lm_eval` (the engine adds it to every objective)."""
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.evaluate.lm_eval_run import training_lm_eval

    run = training_lm_eval(cfg) if dist.get_rank() == 0 else None
    return [LmEvalCallback(cfg, Tokenizer(cfg.data.tokenizer), run, cfg.training.eval_interval, cfg.training.steps)]

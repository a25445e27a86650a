"""Task accuracy while a model trains: `training.eval_tasks` (shipped task names, or `all`) scored by greedy
generation at the start, every `training.eval_interval` steps and at the end of pretraining, SFT or DPO.

It reports through the loop's `on_eval_end` like the validation loss, so the same lines, `metrics.jsonl` rows,
TensorBoard scalars and `loss.png` panel carry it: `task_accuracy`, `task_format`, `task_response_length` and
`acc_<task>` per task. The prompts are the first `training.eval_task_prompts` of each task's test split
(data/tasks/prompts/TASK.test.jsonl), rendered with the chat template as SFT and GRPO see them.
"""

from __future__ import annotations

import time
from typing import Sequence

from myllm_mc.config import Config
from myllm_mc.data.chat import encode_prompt
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.evaluate.policy import PolicySampler
from myllm_mc.evaluate.tasks import policy_task_accuracy
from myllm_mc.tasks import load_records, task_files
from myllm_mc.tasks.selection import eval_task_names

from .callbacks import Callback


def task_prompts(cfg: Config, tokenizer, names: Sequence[str]):
    """(records, prompt ids): the first `eval_task_prompts` test prompts of each task that fit the context."""

    records, ids = [], []
    limit, room = cfg.training.eval_task_prompts, cfg.model.seq_length - cfg.training.eval_task_max_new_tokens
    for path in task_files("prompts", "test", names):
        kept = 0
        for record in load_records([path]):
            if kept == limit:
                break
            prompt = encode_prompt(tokenizer, record)
            if len(prompt) <= room:
                records.append(record)
                ids.append(prompt)
                kept += 1
    return records, ids


class ScheduledEvaluation(Callback):
    """Runs `_evaluate(trainer)` every `interval` steps and at the last step, unless the run is stopping on an
    error; its time is the loop's work, not callback overhead. Subclasses decide about step 0 (`on_train_start`)
    and may switch themselves off with `active`."""

    active = True

    def __init__(self, interval: int, total_steps: int):
        self.interval, self.total_steps = interval, total_steps

    def on_step_end(self, trainer, record, control):
        due = (self.interval and trainer.step % self.interval == 0) or trainer.step == self.total_steps
        if self.active and due and not (control.stop and control.exit_code):
            started = time.perf_counter()
            self._evaluate(trainer)
            trainer.loop_seconds += time.perf_counter() - started

    def _evaluate(self, trainer) -> None:
        raise NotImplementedError


class TaskEvalCallback(ScheduledEvaluation):
    def __init__(self, cfg: Config, tokenizer, interval: int, total_steps: int, batch: int = 8):

        super().__init__(interval, total_steps)
        self.cfg = cfg
        self.records, self.prompt_ids = task_prompts(cfg, tokenizer, eval_task_names(cfg))
        self.sampler = PolicySampler(tokenizer, cfg.model, batch, cfg.training.seed)

    def on_train_start(self, trainer):
        if trainer.step == 0:                  # a resumed run was scored at its last interval already
            self._evaluate(trainer)

    def _evaluate(self, trainer):

        table = policy_task_accuracy(self.sampler, trainer, self.records, self.prompt_ids,
                                     self.cfg.training.eval_task_max_new_tokens)
        total = table.pop("all")
        metrics = {"task_accuracy": total["accuracy"], "task_format": total["format"],
                   "task_response_length": total["response_length"],
                   **{f"acc_{name}": row["accuracy"] for name, row in table.items()}}
        trainer.callbacks.on_eval_end(trainer, trainer.step, metrics)


def task_eval_callbacks(cfg: Config) -> list:
    """[TaskEvalCallback] for a config with `training.eval_tasks` (the engine adds it to every objective)."""
    return [TaskEvalCallback(cfg, Tokenizer(cfg.data.tokenizer), cfg.training.eval_interval, cfg.training.steps)]

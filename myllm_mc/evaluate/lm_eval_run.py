"""`myllm eval --lm-eval`: lm-evaluation-harness tasks on a model this process already holds, through the `myllm`
backend (no second load, no HF conversion); the figures go into the eval report and comparison table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .lm_eval_tasks import run_tasks, summary


@dataclass
class LmEvalRun:
    """What `myllm eval --lm-eval` runs on each checkpoint, checked before any model loads."""

    manager: object                   # lm_eval.tasks.TaskManager that knows every name
    names: List[str]
    limit: Optional[float] = None
    num_fewshot: Optional[int] = None

    def run(self, model, tokenizer, cfg, batch_size: int = 8) -> dict:
        """`summary` of lm_eval on an already loaded model (no second load, no HF conversion)."""
        # lm_eval's model API on use: lm_eval is an optional extra
        from .lm_eval_backend import MyllmLM

        lm = MyllmLM.from_loaded(model, tokenizer, cfg, batch_size=batch_size)
        results = run_tasks(lm, self.manager, self.names, self.limit, num_fewshot=self.num_fewshot)
        return {"names": list(self.names), "limit": self.limit, **summary(results)}

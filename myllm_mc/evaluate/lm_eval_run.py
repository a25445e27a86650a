"""`myllm eval --lm-eval` and `training.eval_lm_eval`: lm-evaluation-harness tasks on a model this process already
holds, through the `myllm` backend (no second load, no HF conversion); the figures go into the eval report and
comparison table, or (training) into the `[valid]` rows as `lm_eval/<task>/<metric>`."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from .lm_eval_tasks import LmEvalError, checked_tasks, run_tasks, summary

BATCH_SIZE = 8                        # requests per forward / decoded together: `myllm eval --batch-size`'s default


@dataclass
class LmEvalRun:
    """What `myllm eval --lm-eval` runs on each checkpoint, checked before any model loads."""

    manager: object                   # lm_eval.tasks.TaskManager that knows every name
    names: List[str]
    limit: Optional[float] = None
    num_fewshot: Optional[int] = None

    def run(self, model, tokenizer, cfg, batch_size: int = BATCH_SIZE) -> dict:
        """`summary` of lm_eval on an already loaded model (no second load, no HF conversion)."""
        # lm_eval's model API on use: lm_eval is an optional extra
        from .lm_eval_backend import MyllmLM

        return self.run_lm(MyllmLM.from_loaded(model, tokenizer, cfg, batch_size=batch_size))

    def run_lm(self, lm) -> dict:
        """`summary` of lm_eval on a `MyllmLM` (training keeps one, and the generator it builds, across evals)."""
        results = run_tasks(lm, self.manager, self.names, self.limit, num_fewshot=self.num_fewshot)
        return {"names": list(self.names), "limit": self.limit, **summary(results)}


def training_lm_eval(cfg) -> Optional[LmEvalRun]:
    """`training.eval_lm_eval` checked where a run starts (preflight, each rank under srun): names lm_eval knows,
    their local data present, a layout rank 0 alone can run the whole model in; one ConfigError line otherwise.
    None when the list is empty."""
    from myllm_mc.config import ConfigError

    t, p = cfg.training, cfg.parallel
    if not t.eval_lm_eval:
        return None
    why = [what for what, bad in (("tensor/pipeline parallelism", p.tensor * p.pipeline > 1),
                                  ("expert parallelism", p.expert > 1), ("context parallelism", p.context > 1),
                                  ("sequence parallelism", p.sequence_parallel),
                                  ("virtual pipeline", p.virtual_pipeline not in (None, 1))) if bad]
    if why:
        raise ConfigError(f"training.eval_lm_eval runs lm-eval on rank 0's whole model, not with {' or '.join(why)}"
                          " — fix: --set training.eval_lm_eval=[] for this layout and score its checkpoints with"
                          " `myllm eval --lm-eval`")
    if t.eval_lm_eval_limit is not None and t.eval_lm_eval_limit <= 0:
        raise ConfigError(f"training.eval_lm_eval_limit {t.eval_lm_eval_limit:g} is not positive — fix: a number of"
                          " documents per task (e.g. 50), a share below 1, or null for all")
    try:
        manager, names = _checked_for_training(",".join(str(n) for n in t.eval_lm_eval))
    except LmEvalError as err:
        own = "; a folder of your own YAMLs goes in with --lm-eval-path DIR"     # a `myllm eval` flag only
        raise ConfigError(f"training.eval_lm_eval: {str(err).replace(own, '')}") from None
    return LmEvalRun(manager, names, t.eval_lm_eval_limit)


@functools.lru_cache(maxsize=4)
def _checked_for_training(names: str):
    """`checked_tasks` once per process for a list of names: `myllm train` checks the list before training and the
    callback then needs the same TaskManager (building one indexes every task YAML: seconds with lm_eval's own).
    A failed check raises and is not cached; a manager is reused across evaluations anyway (the callback's)."""
    return checked_tasks(names)


def training_metrics(figures: dict) -> Dict[str, float]:
    """{"lm_eval/<task>/<metric>": value} of `LmEvalRun.run`'s figures: standard errors and missing (NaN) values
    left out; a filtered metric `exact_match (number)` becomes `exact_match_number` (a name W&B and MLflow take)."""
    out = {}
    for task, metrics in figures["tasks"].items():
        for metric, value in metrics.items():
            if value is None or "_stderr" in metric:
                continue
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", metric).strip("_")
            out[f"lm_eval/{task}/{name}"] = float(value)
    return out

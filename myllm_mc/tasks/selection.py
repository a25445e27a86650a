"""Which shipped tasks a run scores during training (`training.eval_tasks`), checked where the run starts."""

from __future__ import annotations

from typing import List

from myllm_mc.config import Config, ConfigError

from .io import task_files


def eval_task_names(cfg: Config) -> List[str]:
    """`training.eval_tasks` with `all` expanded, checked where a run starts (after the stage's own layout checks,
    so a fine-tuning layout refusal comes first): a name without shipped test prompts, or a layout the generator
    cannot run in, is one ConfigError line."""
    t, p = cfg.training, cfg.parallel
    names = list(t.eval_tasks)
    if not names:
        return []
    if t.eval_task_prompts < 1 or t.eval_task_max_new_tokens < 1:
        raise ConfigError("training.eval_task_prompts and eval_task_max_new_tokens must be ≥ 1 — fix: e.g. 32 and 48")
    if p.virtual_pipeline or p.context > 1 or p.sequence_parallel:
        raise ConfigError("training.eval_tasks generates with the training model, one chunk per rank without context"
                          " or sequence parallelism — fix: --set training.eval_tasks=[] for this layout (and score"
                          " its checkpoints with `myllm eval --tasks`)")
    shipped = [path.name[:-len(".test.jsonl")] for path in task_files("prompts", "test")]
    unknown = [name for name in names if name not in shipped] if names != ["all"] else []
    if unknown:
        raise ConfigError(f"training.eval_tasks: no shipped task {', '.join(map(repr, unknown))} — fix: any of"
                          f" {', '.join(shipped)}, or [all]")
    return shipped if names == ["all"] else names

"""lm-evaluation-harness around our backend: which tasks exist, their local data checked before a model loads, the
`myllm` model registered, tasks run in-process and their figures read back for the report.

Why these checks: lm_eval reads task data through `datasets`, which here has no hub; a mistyped task name or a
missing local file otherwise surfaces after the model has loaded, as a long traceback. Here each is one line
(LmEvalError, exit 2).

lm_eval is an optional extra (`pip install -e ".[lm_eval]"`, in `.[all]`): it is imported on use, and its absence
is one line too. Tasks are looked up first in the local folders only (data/lm_eval and `--lm-eval-path`), which
takes a second; lm_eval's own ~14,000 task YAMLs are indexed (~5-20 s) only when a name is not found there.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from myllm_mc.errors import MyllmError

LOCAL_TASKS_DIR = Path(__file__).resolve().parents[2] / "data" / "lm_eval"
BACKEND = "myllm_mc.evaluate.lm_eval_backend:MyllmLM"
LOCAL_BUILDERS = ("json", "csv", "parquet", "text", "arrow")   # `datasets` loaders that read data_files


class LmEvalError(MyllmError, ValueError):
    """An lm-eval input problem, as one line with its fix."""


def require_lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise LmEvalError("lm-evaluation-harness is not installed — fix: pip install -e \".[lm_eval]\" (lm_eval"
                          " 0.4.13; it is in .[all])") from None
    return lm_eval


def register() -> None:
    """Put `myllm` into lm_eval's model registry (lazily: the backend, and torch with it, loads when used).
    lm_eval 0.4.13 has no plugin discovery (entry points): this is what `myllm-lm-eval` does first."""
    require_lm_eval()
    import lm_eval.models  # noqa: F401  (its own models first: the registry fills itself only when empty)
    from lm_eval.api.registry import model_registry

    if "myllm" not in model_registry:
        model_registry.register("myllm", target=BACKEND)


def generation_layout_problem(cfg) -> Optional[str]:
    """Why lm-eval cannot run at cfg's layout (its generation needs one model chunk, no context or sequence
    parallelism, in one process), or None."""
    p = cfg.parallel
    why = [what for what, bad in (("virtual pipeline", p.virtual_pipeline not in (None, 1)),
                                  ("context parallelism", p.context > 1),
                                  ("sequence parallelism", p.sequence_parallel),
                                  ("tensor/pipeline parallelism", p.tensor * p.pipeline > 1)) if bad]
    if not why:
        return None
    return (f"lm-eval scores and generates in one process without {' or '.join(why)} — fix: drop those"
            " parallel.* overrides (a checkpoint saved at any layout loads into one process)")


def include_paths(extra: Sequence[str] = ()) -> List[str]:
    missing = [p for p in extra if not Path(p).is_dir()]
    if missing:
        raise LmEvalError(f"--lm-eval-path {missing[0]!r} is not a directory — fix: pass a folder of lm-eval task"
                          " YAML files")
    return [str(LOCAL_TASKS_DIR), *[str(Path(p).resolve()) for p in extra]]


def task_manager(names: Sequence[str], paths: Sequence[str] = ()):
    """(TaskManager, names) that knows every name; LmEvalError naming an unknown one (with close matches)."""
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    if not names:
        raise LmEvalError("no lm-eval task named — fix: --lm-eval myllm_local (or a comma list of task names)")
    include = include_paths(paths)
    manager = TaskManager(include_path=include, include_defaults=False, verbosity="ERROR")
    if any(n not in manager.all_tasks for n in names):
        manager = TaskManager(include_path=include, include_defaults=True, verbosity="ERROR")
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        close = difflib.get_close_matches(unknown[0], manager.all_tasks, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise LmEvalError(f"unknown lm-eval task {unknown[0]!r} — fix: {hint}the local tasks are"
                          f" {', '.join(sorted(local_task_names()))}; a folder of your own YAMLs goes in"
                          " with --lm-eval-path DIR")
    return manager, list(names)


def local_task_names() -> List[str]:
    return [p.stem.lstrip("_") for p in LOCAL_TASKS_DIR.glob("*.yaml")]


def _leaves(manager, name: str, seen=None) -> List[str]:
    seen = set() if seen is None else seen
    entry = manager.task_index.get(name)
    if entry is None or name in seen:
        return []
    seen.add(name)
    members = entry.cfg.get("task") if isinstance(entry.cfg, dict) else None
    if isinstance(members, list):
        return [leaf for m in members if isinstance(m, str) for leaf in _leaves(manager, m, seen)]
    return [name]


def data_file_problems(manager, names: Sequence[str]) -> List[str]:
    """One line per local data file a task names that does not exist. `data_files` are read relative to the
    working directory (what `datasets` does), or to the YAML's folder for tasks loaded by data/lm_eval's
    `local_files.load`; a `dataset_path` that is a local path must exist."""
    problems = []
    for leaf in dict.fromkeys(leaf for n in names for leaf in _leaves(manager, n)):
        entry = manager.task_index[leaf]
        cfg = entry.cfg if isinstance(entry.cfg, dict) else {}
        files = (cfg.get("dataset_kwargs") or {}).get("data_files")
        base = Path.cwd()
        if str(cfg.get("custom_dataset", "")).endswith("local_files.load"):
            base = Path(entry.yaml_path).resolve().parent
        if isinstance(files, str):
            files = {"data": files}
        for split, path in (files or {}).items():
            for one in ([path] if isinstance(path, str) else list(path or [])):
                full = Path(one) if Path(one).is_absolute() else base / one
                if "*" not in one and not full.exists():
                    problems.append(f"lm-eval task {leaf}: data file {full} ({split}) not found — fix: put the file"
                                    f" there or point data_files in {entry.yaml_path} at a local copy")
        path = cfg.get("dataset_path")
        if isinstance(path, str) and path.startswith((".", "/", "~")) and not Path(path).expanduser().exists():
            problems.append(f"lm-eval task {leaf}: dataset_path {path} not found — fix: point dataset_path in"
                            f" {entry.yaml_path} at a local copy")
    return problems


def checked_tasks(names: str, paths: Sequence[str] = ()):
    """`--lm-eval a,b` → (TaskManager, [names]); unknown names and missing local data are one-line errors."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    manager, wanted = task_manager(wanted, paths)
    problems = data_file_problems(manager, wanted)
    if problems:
        raise LmEvalError(problems[0])
    return manager, wanted


def run_tasks(lm, manager, names: Sequence[str], limit: Optional[float] = None, log_samples: bool = False,
              num_fewshot: Optional[int] = None) -> dict:
    """lm_eval's `simple_evaluate` on an LM instance (ours, already loaded). bootstrap_iters=0: the standard
    errors lm_eval computes in closed form (acc, exact_match) are kept; the bootstrapped ones (perplexities)
    would cost minutes and are left out."""
    from lm_eval import simple_evaluate

    quiet = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"          # lm_eval's per-request progress bars; our own lines say it runs
    try:
        return simple_evaluate(model=lm, tasks=list(names), task_manager=manager, limit=limit,
                               num_fewshot=num_fewshot, bootstrap_iters=0, log_samples=log_samples,
                               verbosity="ERROR")
    finally:
        if quiet is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = quiet


def summary(results: dict) -> Dict[str, dict]:
    """{"tasks": {task: {metric: value}}, "samples": {task: n}, "versions": {...}} from simple_evaluate's result:
    metric names without lm_eval's ",filter" suffix when the filter is "none"."""
    tasks: Dict[str, dict] = {}
    for task, row in (results.get("results") or {}).items():
        metrics = {}
        for key, value in row.items():
            if key in ("alias", "sample_len") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric, _, filt = key.partition(",")
            name = metric if filt in ("", "none") else f"{metric} ({filt})"
            if isinstance(value, float) and math.isnan(value):
                value = None
            metrics[name] = value
        tasks[task] = metrics
    return {"tasks": tasks, "samples": {k: v.get("effective", v.get("original")) if isinstance(v, dict) else v
                                        for k, v in (results.get("n-samples") or {}).items()},
            "versions": dict(results.get("versions") or {})}



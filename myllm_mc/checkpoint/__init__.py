"""Checkpoints for every stage (train, align, generate, export): one package, megatron-core dist_checkpointing.

    from myllm_mc import checkpoint
    checkpoint.save_model(chunks, dir); checkpoint.load_model(chunks, dir)   # weights only, any layout ↔ any layout
    checkpoint.resolve_weights(path)          # `checkpoint.init_from`: a root (its latest), a step dir or a model save
    checkpoint.resolve_resume(resume, root)   # `checkpoint.resume`: "auto" → newest complete under root, or a path
    checkpoint.save_training_state(root, step, model, optimizer, scheduler, consumed, meta, ...)   # crash-safe
    checkpoint.load_training_state(path, model, optimizer, scheduler)                          # → meta
    checkpoint.find_latest(root); checkpoint.read_meta(step_dir); checkpoint.prune(root, keep_last)

Modules: `weights` (model chunks only), `training_state` (model + optimizer + scheduler + RNG + data position),
`store` (the directory protocol: temp dir → fsync → rename → `latest`), `resolve` (which checkpoint to start
from), `cli` (`myllm checkpoint inspect`). Nothing here imports torch at module import time.
"""

from .resolve import resolve_resume, resolve_weights
from .store import find_latest, is_complete, list_complete, prune, read_meta
from .training_state import load as load_training_state
from .training_state import save as save_training_state
from .weights import load_model, save_model, sharded_model_state, state_keys

__all__ = ["load_model", "save_model", "sharded_model_state", "state_keys", "resolve_weights", "resolve_resume",
           "save_training_state", "load_training_state", "find_latest", "is_complete", "list_complete", "prune",
           "read_meta"]

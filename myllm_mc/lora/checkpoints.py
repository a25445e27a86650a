"""LoRA checkpoints: what a run records about its base, and loading "base + adapters" anywhere weights are read.

A LoRA training checkpoint is a normal myllm checkpoint whose model part holds only the adapters (the trainable
parameters; `checkpoint.training_state` with `trainable_only`) and whose meta has a `lora` entry: the adapter
config and the pointer to the frozen base (`checkpoint.base_pointer`). `load_weights` below is what every reader
(training's init_from, generate/chat/eval/serve, export) calls: a plain checkpoint loads as before; an adapter
checkpoint loads its base, attaches adapters of the recorded config and fills them, optionally merging them.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import List, Optional

from megatron.core import dist_checkpointing

from myllm_mc.checkpoint import base_pointer, load_model, read_meta, resolve_weights, sharded_model_state, store
from myllm_mc.checkpoint.errors import CheckpointError
from myllm_mc.checkpoint.weights import state_keys
from myllm_mc.config.schema import LoRAConfig

from .apply import apply_lora, merge_adapters


def lora_meta(path) -> Optional[dict]:
    """The `lora` entry of a complete checkpoint's meta (None: a plain checkpoint or a bare model save)."""
    path = Path(path)
    return read_meta(path).get("lora") if store.is_complete(path) else None


def run_meta(lora_cfg, base: Optional[Path]) -> dict:
    """The meta entry a LoRA run saves with every checkpoint."""
    return {"lora": {**asdict(lora_cfg), **(base_pointer.pointer(base) if base else {"base": None})}}


def lora_config(meta: dict) -> LoRAConfig:
    names = {f.name for f in fields(LoRAConfig)}
    return LoRAConfig(**{k: v for k, v in meta.items() if k in names})


def load_adapters(chunks: List, path) -> None:
    """Fill the adapters already attached to `chunks` from an adapter checkpoint at any layout (collective)."""
    states = sharded_model_state(chunks, trainable_only=True)
    if not any(states.values()):
        raise CheckpointError(f"{path}: the model has no adapters to load into")
    loaded = dist_checkpointing.load(states, str(path))
    for key, chunk in zip(state_keys(len(chunks)), chunks):
        result = chunk.load_state_dict(loaded[key], strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"{path}: tensors {result.unexpected_keys[:3]} fit no adapter")


def load_weights(chunks: List, path, merge: bool = False, echo=None) -> Optional[dict]:
    """Fill `chunks` from `path` (a root, step dir or model save). For an adapter checkpoint: its base, then its
    adapters (attached to `chunks`; `merge=True` folds them into the weights and removes them). Returns the
    adapter checkpoint's `lora` meta, or None for a plain checkpoint."""
    target = resolve_weights(str(path))
    meta = lora_meta(target)
    if meta is None:
        load_model(chunks, str(target))
        return None
    base = base_pointer.check_base(meta, str(target))
    load_weights(chunks, base, merge=True)          # a base may itself be adapters on a base (LoRA SFT → LoRA DPO)
    apply_lora(chunks, lora_config(meta), seed=0)
    load_adapters(chunks, target)
    if merge:
        merge_adapters(chunks)
        for chunk in chunks:
            for param in chunk.parameters():
                param.requires_grad_(True)
    if echo:
        echo(f"{target}: LoRA adapters (rank {meta['rank']}) on the base {base}"
             + (", merged into its weights" if merge else ", kept separate (not merged)"))
    return meta

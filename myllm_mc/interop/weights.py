"""Whole-model weights in one process, for conversion: a checkpoint at any layout → one full state dict, and back.

Why one process at TP=1/PP=1: megatron's dist_checkpointing stores tensors by global key and shape, so loading a
TP=2 or PP=2 checkpoint into a TP=1/PP=1 model *is* the resharding (the same path training's `init_from` uses);
the name/layout mapping then only ever sees whole tensors (myllm_mc.model.llama_layout).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict

import torch

from myllm_mc.config import Config, from_dict, to_dict

from .errors import ConversionError  # defined torch-free there; the loaders import it from here too

SINGLE_PROCESS = ["parallel.world_size=1", "parallel.tensor=1", "parallel.pipeline=1", "parallel.virtual_pipeline=null",
                  "parallel.context=1", "parallel.data=1", "parallel.sequence_parallel=false",
                  "parallel.backend=gloo", "model.recompute=none", "model.spec=local"]


def single_process(cfg: Config, precision: str = "fp32") -> Config:
    """The same model at TP=1/PP=1, local spec, in `precision` (what conversion builds)."""
    return from_dict(to_dict(cfg), SINGLE_PROCESS + [f"model.precision={precision}"], world_size=1)


def build_single(cfg: Config):
    """init the one-process groups and build the TP=1/PP=1 GPTModel (returns the model)."""
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    init_distributed(cfg)
    return build_model(cfg)[0]


def load_weights(model, path) -> None:
    """Fill a TP=1/PP=1 local-spec model from a checkpoint of any layout, written with the local or the TE spec.

    megatron-core already stores the local spec's pre-norms under TE's fused names (`linear_qkv.layer_norm_weight`,
    `linear_fc1.layer_norm_weight`), so both specs share tensor keys; only weights are requested here, because
    TE's fp8 `_extra_state` objects mean nothing to the local spec."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    stored = set(dist_checkpointing.load_tensors_metadata(str(path)))
    request = {}
    for name, item in model.sharded_state_dict().items():
        if isinstance(item, ShardedTensorFactory):    # SwiGLU's fc1: [gate; up] split for resharding
            request[name] = item
            continue
        if isinstance(item, ShardedTensor):
            request[name] = item
    missing = sorted(item.key for item in request.values() if item.key not in stored)
    if missing:
        raise ConversionError(f"{path}: holds no {missing[0]} ({len(missing)} weights missing) — fix: pass the"
                              " config the checkpoint was trained with")
    loaded = dist_checkpointing.load(request, str(path))
    loaded = {k: v for k, v in loaded.items() if k in request}   # drop a training checkpoint's common.pt state
    result = model.load_state_dict(loaded, strict=False)
    absent = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    if absent or result.unexpected_keys:
        raise ConversionError(f"{path}: weights {absent[:3]} not loaded, {result.unexpected_keys[:3]} unexpected")


def load_full_state(cfg: Config, checkpoint: str) -> Dict[str, torch.Tensor]:
    """Every weight of the checkpoint (any layout: a training step dir, a checkpoint root, or a model save) as
    whole fp32 tensors keyed by the TP=1 GPTModel's names."""
    from myllm_mc.checkpoint import resolve_weights

    try:
        path = resolve_weights(checkpoint)
    except FileNotFoundError as err:
        raise ConversionError(str(err).replace("checkpoint.init_from", "--checkpoint")) from None
    one = single_process(cfg, precision=cfg.model.precision if cfg.model.precision != "fp8" else "bf16")
    model = build_single(one)
    try:
        load_weights(model, path)
    except ConversionError:
        raise
    except Exception as err:   # dist_checkpointing reports mismatched shapes in several exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConversionError(f"{path}: does not match the config's model ({first[:200]}) — fix: pass the config"
                              " the checkpoint was trained with") from None
    return {name: tensor.detach().float().clone() for name, tensor in model.state_dict().items()
            if isinstance(tensor, torch.Tensor) and not name.endswith("_extra_state")}


def save_full_state(cfg: Config, state: Dict[str, torch.Tensor], directory: str | Path):
    """Build the model of `cfg` at TP=1/PP=1, fill it with `state` (every weight must be there) and write a megatron
    distributed checkpoint that any layout loads. Returns the filled model (for parity checks)."""
    from myllm_mc.checkpoint import save_model

    model = build_single(single_process(cfg))
    own = {k: v for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ConversionError(f"weights do not fit the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, tensor in own.items():
            if tuple(state[name].shape) != tuple(tensor.shape):
                raise ConversionError(f"{name}: shape {tuple(state[name].shape)} but the config builds"
                                      f" {tuple(tensor.shape)}")
            tensor.copy_(state[name])
    save_model([model], str(directory))
    return model


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq, vocab] fp32 logits of a TP=1/PP=1 GPTModel (causal, no cache)."""
    ids = ids if ids.dim() == 2 else ids[None]
    positions = torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1)
    model.eval()
    with torch.no_grad():
        return model(ids, positions, None).float()


def greedy_recompute(model, prompt, new_tokens: int, vocab: int) -> list[int]:
    """Argmax decoding by full recomputation (no KV cache): the reference every converted format is held to."""
    ids = list(prompt)
    for _ in range(new_tokens):
        ids.append(int(logits(model, torch.tensor(ids))[0, -1, :vocab].argmax()))
    return ids[len(prompt):]


def with_model(cfg: Config, **changes) -> Config:
    return replace(cfg, model=replace(cfg.model, **changes))

"""A deliberate vocabulary growth: weights of a V-token checkpoint into a model with more tokens.

Opt-in with `checkpoint.allow_vocab_growth=true`, through `checkpoint.init_from` only (weights; the optimizer
starts fresh — Adam's moments of rows that did not exist cannot be made up). dist_checkpointing loads a tensor
by its global shape, so the embedding (and an untied output layer) is read at its saved shape, then copied into
this rank's shard of the bigger parameter:
  * rows of the saved real vocabulary (checkpoint `model_shape.vocab_size`; its padding rows never carried a
    token) are copied bit-exact;
  * every other row is the mean of the saved real rows. Why the mean rather than the model's random init: a new
    token's logit h·mean starts at the average logit, so the grown model's loss on old text is (almost) the old
    model's and no new token dominates the softmax — what HF `resize_token_embeddings(mean_resizing=True)` and
    TRL users expect; a random row of init std would give new tokens arbitrary logits.
Any other shape difference is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import store
from .errors import CheckpointError
from .weights import sharded_model_state, state_keys

VOCAB_KEYS = ("embedding.word_embeddings.weight", "output_layer.weight")


def saved_real_vocab(directory) -> Optional[int]:
    """The checkpoint's `model.vocab_size` when it is a myllm training checkpoint (else None: use its rows)."""
    if store.is_complete(Path(directory)):
        return (store.read_meta(directory).get("model_shape") or {}).get("vocab_size")
    return None


def grown_rows(old, real_vocab: int, offset: int, rows: int):
    """This rank's `rows` rows from global row `offset` of the grown tensor (see the module docstring)."""
    import torch
    mean = old[:real_vocab].to(torch.float64).mean(0).to(old.dtype)
    index = torch.arange(offset, offset + rows)
    out = mean.expand(rows, -1).clone()
    keep = index < real_vocab
    out[keep] = old[index[keep]]
    return out


def load_model(chunks, directory: str, allow_growth: bool, where: str = "checkpoint.init_from") -> Optional[tuple]:
    """Fill `chunks` from `directory` (collective); grow the vocabulary if allowed. Returns (old, new) rows if grown."""
    import torch
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    saved = dist_checkpointing.load_tensors_metadata(str(directory))
    state = sharded_model_state(chunks)
    grown = {}
    for top, sd in state.items():
        for name, sh in list(sd.items()):
            if not isinstance(sh, ShardedTensor) or sh.key not in saved:
                continue
            old_shape = tuple(saved[sh.key].global_shape)
            if old_shape == tuple(sh.global_shape):
                continue
            growth = (sh.key in VOCAB_KEYS and len(old_shape) == 2 and old_shape[1] == sh.global_shape[1]
                      and old_shape[0] < sh.global_shape[0])
            if not growth or not allow_growth:
                fix = ("--set checkpoint.allow_vocab_growth=true to grow the vocabulary (new rows = the mean of "
                       "the old ones)" if growth else "use the model config the checkpoint was trained with")
                raise CheckpointError(f"{where} {directory}: {sh.key} was saved as {list(old_shape)}, the model has "
                                      f"{list(sh.global_shape)} — fix: {fix}")
            sd[name] = ShardedTensor.from_rank_offsets(sh.key, torch.empty(old_shape, dtype=sh.data.dtype),
                                                       replica_id=0)
            grown[(top, name)] = (sh, old_shape[0])
    loaded = dist_checkpointing.load(state, str(directory))
    result = None
    if grown:
        real = saved_real_vocab(directory)
        for (top, name), (sh, old_rows) in grown.items():
            real_vocab = min(real or old_rows, old_rows)
            loaded[top][name] = grown_rows(loaded[top][name], real_vocab, sh.global_offset[0], sh.local_shape[0])
            result = (real_vocab, sh.global_shape[0])
    for key, chunk in zip(state_keys(len(chunks)), chunks):
        chunk.load_state_dict(loaded[key], strict=True)
    return result

"""Model weights in and out through megatron-core's dist_checkpointing (torch_dist format).

Each rank contributes the sharded state dict of its chunks; tensors are stored by their global key and global
shape (layer index included), not by rank, so a checkpoint written at one layout (TP/PP/VPP/CP/DP) loads at
any other. The state-dict nesting follows Megatron-LM ("model", or "model0", "model1", ... with virtual
stages), which dist_checkpointing ignores for sharded tensors, so chunk counts may differ between save and load.

dist_checkpointing's writer starts a spawn-context multiprocessing manager on the first save: scripts that
save need an `if __name__ == "__main__":` guard, and `myllm_mc.parallel.state.destroy()` stops the manager.
"""

from __future__ import annotations

import os


def state_keys(count: int) -> list[str]:
    """The top-level keys of `count` chunks: "model", or "model0", "model1", ... (Megatron-LM's naming)."""
    return ["model"] if count == 1 else [f"model{i}" for i in range(count)]


def sharded_model_state(chunks, trainable_only: bool = False) -> dict:
    """{"model" | "model<i>": sharded state dict} for this rank's chunks.

    trainable_only: only the tensors of parameters that require gradients (a LoRA run's adapters: its checkpoints
    hold those and point at the frozen base instead of copying it)."""
    states = {key: chunk.sharded_state_dict() for key, chunk in zip(state_keys(len(chunks)), chunks)}
    if trainable_only:
        states = {key: {name: item for name, item in state.items()
                        if getattr(getattr(item, "data", None), "requires_grad", False)}
                  for key, state in states.items()}
    return states


def save_model(chunks, directory: str) -> None:
    """Write this rank's share of the model to `directory` (collective: every rank calls it)."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy

    os.makedirs(directory, exist_ok=True)
    dist.barrier()
    dist_checkpointing.save(sharded_model_state(chunks), directory,
                            sharded_strategy=get_default_save_sharded_strategy("torch_dist"))


def load_model(chunks, directory: str) -> None:
    """Fill this rank's chunks from a checkpoint written at any layout (collective)."""
    from megatron.core import dist_checkpointing

    if not os.path.isdir(directory) or not dist_checkpointing.check_is_distributed_checkpoint(directory):
        raise FileNotFoundError(f"{directory!r} is not a megatron distributed checkpoint"
                                " — fix: pass the directory save_model wrote (it holds metadata.json)")
    state = dist_checkpointing.load(sharded_model_state(chunks), directory)
    for key, chunk in zip(state_keys(len(chunks)), chunks):
        chunk.load_state_dict(state[key], strict=True)

"""MyLLM on megatron-core: what the training loop imports.

    from myllm_mc.parallel.state import init_distributed, destroy
    from myllm_mc.model import build_model, forward_step, reduce_loss, save_model, load_model

    runtime = init_distributed(cfg)          # groups + seeds from cfg.parallel (CPU bridge when no CUDA)
    chunks = build_model(cfg)                # list[GPTModel], one per virtual pipeline stage
    # wrap each chunk in megatron's DistributedDataParallel (and Float16Module for bf16, as Megatron-LM does)
    store = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=..., model=chunks, ...)
    loss = reduce_loss(store)                # token-weighted mean; None off the last pipeline stage
    save_model(chunks, directory); load_model(chunks, directory)   # any layout ↔ any layout
"""

from myllm_mc.checkpoint.weights import load_model, save_model, sharded_model_state  # re-exported for callers

from .build import build_model, padded_vocab_size
from .loss import forward_step, lm_loss, random_batch, reduce_loss, split_for_context_parallel
from .params import parameter_counts
from .spec import layer_spec
from .transformer_config import transformer_config

__all__ = ["build_model", "padded_vocab_size", "save_model", "load_model", "sharded_model_state", "forward_step",
           "lm_loss", "random_batch", "reduce_loss", "split_for_context_parallel", "parameter_counts",
           "layer_spec", "transformer_config"]

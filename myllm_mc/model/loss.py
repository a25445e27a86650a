"""Next-token loss in the shape megatron-core's schedules expect.

    from megatron.core.pipeline_parallel import get_forward_backward_func
    store = get_forward_backward_func()(forward_step_func=forward_step, data_iterator=batches, model=chunks,
                                        num_microbatches=n, seq_length=s, micro_batch_size=b, forward_only=False)
    loss = reduce_loss(store)        # token-weighted mean over micro-batches and data/context ranks

A batch is a dict of [batch, seq] tensors with megatron GPTDataset's keys: tokens, labels, loss_mask,
position_ids (attention_mask optional: None means causal, which is what MyLLM uses). `forward_step` slices it
for context parallelism itself, so a data loader never needs to know the layout.
"""

from __future__ import annotations

from functools import partial

import torch
from megatron.core import parallel_state as ps
from megatron.core.utils import get_batch_on_this_cp_rank


def lm_loss(loss_mask: torch.Tensor, per_token_loss: torch.Tensor):
    """megatron's three-value loss contract: (masked loss sum, token count, report).

    The schedule divides by the token count and the number of micro-batches for the backward pass
    (or not, with `calculate_per_token_loss`); the report [sum, count] lets `reduce_loss` weight micro-batches
    and ranks by tokens, which a mean of means would not.
    """
    losses = per_token_loss.float().reshape(-1)
    mask = loss_mask.float().reshape(-1)
    loss_sum = torch.sum(losses * mask)
    tokens = mask.sum().to(torch.int)
    report = torch.stack([loss_sum.detach(), mask.sum()])
    return loss_sum, tokens, {"lm loss": report}


SEQUENCE_KEYS = ("tokens", "labels", "loss_mask", "position_ids", "attention_mask")


def split_for_context_parallel(batch: dict) -> dict:
    """This context-parallel rank's two load-balanced sequence chunks (identity without CP).

    Only the per-token tensors are kept: a blended dataset adds a per-sample `dataset_id`, which megatron's
    splitter would try (and fail) to cut along the sequence."""
    return get_batch_on_this_cp_rank({key: batch.get(key) for key in SEQUENCE_KEYS})


def random_batch(batch_size: int, seq_length: int, vocab_size: int, seed: int = 0) -> dict:
    """Uniform random tokens as a next-token batch (labels are the tokens shifted by one): the input on which
    an untrained model's loss must be ln(vocab) and on which layouts are compared."""
    generator = torch.Generator().manual_seed(seed)
    stream = torch.randint(0, vocab_size, (batch_size, seq_length + 1), generator=generator)
    return {"tokens": stream[:, :-1].contiguous(), "labels": stream[:, 1:].contiguous(),
            "loss_mask": torch.ones(batch_size, seq_length),
            "position_ids": torch.arange(seq_length).expand(batch_size, -1).contiguous()}


def forward_step(data_iterator, model):
    """`forward_step_func` for megatron's schedules: next batch → (per-token loss, loss function)."""
    batch = split_for_context_parallel(next(data_iterator))
    device = next(model.parameters()).device
    batch = {k: v.to(device) if v is not None else None for k, v in batch.items()}
    output = model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"])
    return output, partial(lm_loss, batch["loss_mask"])


def reduce_loss(forward_data_store: list) -> float | None:
    """Token-weighted mean loss of one step over micro-batches, data-parallel and context-parallel ranks.
    None on pipeline stages other than the last (they compute no loss)."""
    if not forward_data_store:
        return None
    total = torch.stack([entry["lm loss"] for entry in forward_data_store]).sum(0)
    torch.distributed.all_reduce(total, group=ps.get_data_parallel_group(with_context_parallel=True))
    return (total[0] / total[1].clamp(min=1)).item()

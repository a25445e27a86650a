"""Task accuracy on the shipped verifiable tasks (data/tasks/prompts/*.test.jsonl): each prompt rendered with
the chat template (as SFT and GRPO see it), answered by greedy decoding, checked by the task's verifier.

accuracy: `is_correct` (exact match of the extracted, normalised answer); format: `follows_format` (the reply's
shape: tagged tasks exactly one <answer>…</answer>, others one non-empty line without tags). A base model that
never saw the chat template scores ~0 on both; that is the point of the comparison with SFT/DPO/GRPO.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch

from myllm_mc.data.chat import encode_prompt
from myllm_mc.infer import SamplingParams
from myllm_mc.parallel.hardware import comm_device
from myllm_mc.tasks import accuracy_by_task, follows_format


def score_replies(records: Sequence[dict], responses: Sequence[str], lengths: Optional[Sequence[int]] = None
                  ) -> Dict[str, dict]:
    """{task: {"correct", "total", "accuracy", "format_ok", "format"[, "length", "response_length"]}} plus "all":
    the one scoring of greedy replies that `myllm eval`, the training-time callback and GRPO's held-out check use."""
    table = accuracy_by_task(records, responses)
    for row in table.values():
        row["format_ok"], row["length"] = 0, 0
    for i, (record, response) in enumerate(zip(records, responses)):
        ok, n = follows_format(record, response), (lengths[i] if lengths is not None else 0)
        for name in (record.get("task", "?"), "all"):
            table[name]["format_ok"] += ok
            table[name]["length"] += n
    for row in table.values():
        row["format"] = row["format_ok"] / row["total"]
        row["response_length"] = row["length"] / row["total"]
    return table


def task_accuracy(generator, records: List[dict], max_new_tokens: int = 64,
                  progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, dict]:
    """`score_replies` of one greedy reply per record from a loaded `Generator`; prompts that do not fit the
    context with room for one token are counted as wrong and listed under "too_long"."""
    tokenizer = generator.tokenizer
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    prompts = [encode_prompt(tokenizer, r) for r in records]
    fits = [i for i, p in enumerate(prompts) if len(p) < generator.max_seq]
    responses, lengths = [""] * len(records), [0] * len(records)
    step = max(generator.max_batch, 1) * 4
    for first in range(0, len(fits), step):
        chunk = fits[first:first + step]
        for i, completion in zip(chunk, generator.generate([prompts[i] for i in chunk], params)):
            responses[i] = tokenizer.decode(completion.token_ids, skip_special_tokens=False)
            lengths[i] = len(completion.token_ids)
        if progress:
            progress(min(first + step, len(fits)), len(fits))
    table = score_replies(records, responses, lengths)
    table["all"]["too_long"] = len(records) - len(fits)
    table["all"]["max_new_tokens"] = max_new_tokens
    return table


def policy_task_accuracy(sampler, trainer, records: Sequence[dict], prompt_ids: Sequence[List[int]],
                         max_new_tokens: int) -> Dict[str, dict]:
    """`score_replies` of the model being trained (a `policy.PolicySampler`), the records split over the data-
    parallel ranks and the counts summed over them: every rank returns the same table. Collective."""
    # megatron-core on use: see inputs.py
    from megatron.core import parallel_state as ps

    tasks = sorted({r.get("task", "?") for r in records})
    rank, size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    mine = list(range(rank, len(records), size))
    done = sampler.greedy(trainer, [prompt_ids[i] for i in mine], max_new_tokens)
    texts = [sampler.tokenizer.decode(c.token_ids, skip_special_tokens=False) for c in done]
    local = score_replies([records[i] for i in mine], texts, [len(c.token_ids) for c in done])
    keys = ("correct", "format_ok", "length", "total")
    sums = torch.tensor([[float(local.get(t, {}).get(k, 0)) for k in keys] for t in tasks], dtype=torch.float64,
                        device=comm_device())
    torch.distributed.all_reduce(sums, group=ps.get_data_parallel_group())
    table = {}
    for name, row in zip(tasks + ["all"], [*sums.tolist(), sums.sum(0).tolist()]):
        correct, format_ok, length, total = row
        n = max(total, 1.0)
        table[name] = {"correct": int(correct), "total": int(total), "accuracy": correct / n,
                       "format_ok": int(format_ok), "format": format_ok / n, "response_length": length / n}
    return table

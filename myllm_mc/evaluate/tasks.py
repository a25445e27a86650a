"""Task accuracy on the shipped verifiable tasks (data/tasks/prompts/*.test.jsonl): each prompt rendered with
the chat template (as SFT and GRPO see it), answered by greedy decoding, checked by the task's verifier.

accuracy: `is_correct` (exact match of the extracted, normalised answer); format: `follows_format` (the reply's
shape: tagged tasks exactly one <answer>…</answer>, others one non-empty line without tags). A base model that
never saw the chat template scores ~0 on both; that is the point of the comparison with SFT/DPO/GRPO.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional


def task_accuracy(generator, records: List[dict], max_new_tokens: int = 64,
                  progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, dict]:
    """{task: {"correct", "total", "accuracy", "format_ok", "format"}} plus "all"; prompts that do not fit the
    context with room for one token are counted as wrong and listed under "too_long"."""
    from myllm_mc.data.chat import encode_prompt
    from myllm_mc.data.tasks import accuracy_by_task, follows_format
    from myllm_mc.infer import SamplingParams

    tokenizer = generator.tokenizer
    params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
    prompts = [encode_prompt(tokenizer, r) for r in records]
    fits = [i for i, p in enumerate(prompts) if len(p) < generator.max_seq]
    responses = [""] * len(records)
    step = max(generator.max_batch, 1) * 4
    for first in range(0, len(fits), step):
        chunk = fits[first:first + step]
        for i, completion in zip(chunk, generator.generate([prompts[i] for i in chunk], params)):
            responses[i] = tokenizer.decode(completion.token_ids, skip_special_tokens=False)
        if progress:
            progress(min(first + step, len(fits)), len(fits))
    table = accuracy_by_task(records, responses)
    for row in table.values():
        row["format_ok"] = 0
    for record, response in zip(records, responses):
        ok = follows_format(record, response)
        table[record.get("task", "?")]["format_ok"] += ok
        table["all"]["format_ok"] += ok
    for row in table.values():
        row["format"] = row["format_ok"] / row["total"]
    table["all"]["too_long"] = len(records) - len(fits)
    table["all"]["max_new_tokens"] = max_new_tokens
    return table

"""Evaluation of checkpoints: perplexity and bits per byte, task accuracy by greedy generation, multiple choice by
log-likelihood, and a comparison table over several checkpoints (`myllm eval`, docs/evaluation.md).

    from myllm_mc.evaluate import score_stream, score_choices, task_accuracy
    result = score_stream(model, ids, seq_length=256, nbytes=len(text.encode()))   # tokens, nll, ppl, bits/byte

Every figure comes from megatron-core's own per-token cross-entropy (the model called with labels), the same
numbers the training loop averages, so an eval perplexity is exactly exp of the loss training would report.
"""

from .multiple_choice import MCSet, read_mc_file, score_choices
from .perplexity import PerplexityResult, next_token_windows, score_stream, token_nll
from .tasks import task_accuracy

__all__ = ["MCSet", "PerplexityResult", "next_token_windows", "read_mc_file", "score_choices", "score_stream",
           "task_accuracy", "token_nll"]

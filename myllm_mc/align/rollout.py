"""GRPO rollouts: which prompts a step uses, G sampled completions of each from the current policy, their rewards
and group-relative advantages, laid out as training micro-batches.

Sampling runs on megatron-core's inference path through the public `myllm_mc.infer.Generator`, built once on the
policy's own (unwrapped) model chunk: no weight copy, no second model, so the sampler always sees the weights
the trainer is updating. Each completion has its own seed, derived from (training.seed, rollout, prompt
position, sample), so a rollout is the same at DP=1 and DP=2 and after a resume.

Prompts: rollout k uses positions [k·P, (k+1)·P) of an endless sequence of shuffled epochs over the prompt set
(P = global batch ÷ G prompts); DP rank r takes a contiguous 1/D of them, whole groups only, so advantages
need no communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from myllm_mc.tasks import compute_rewards

from .chat_data import Prompt
from .grpo_loss import group_advantages
from .packing import epoch_order


def prompt_rollouts(prompts: Sequence[Prompt], per_rollout: int, seed: int, dp_rank: int, dp_size: int,
                    first_rollout: int) -> Iterator[Tuple[int, List[Tuple[int, Prompt]]]]:
    """(rollout index, [(global position, prompt), ...] of this DP rank) from `first_rollout` on, forever."""
    n, share = len(prompts), per_rollout // dp_size
    orders: Dict[int, List[int]] = {}
    k = first_rollout
    while True:
        out = []
        for position in range(k * per_rollout + dp_rank * share, k * per_rollout + (dp_rank + 1) * share):
            epoch = position // n
            if epoch not in orders:
                orders = {epoch: epoch_order(n, seed, epoch)}          # keep one epoch's order at a time
            out.append((position, prompts[orders[epoch][position % n]]))
        yield k, out
        k += 1


def sample_seed(seed: int, rollout: int, position: int, sample: int) -> int:
    """A per-completion seed independent of the layout (DP size, micro-batching) and of the batch it ran in."""
    return (((seed * 1_000_003 + rollout) * 1_000_033 + position) * 1_009 + sample) % (2 ** 63)


@dataclass
class Rollout:
    """This rank's completions of one rollout, as [rows, ...] arrays (rows = prompts × G, groups consecutive)."""

    tokens: np.ndarray          # int64 [rows, seq]: prompt + completion, shifted inputs
    labels: np.ndarray          # int64 [rows, seq]: next tokens
    mask: np.ndarray            # float32 [rows, seq]: 1 on completion tokens of kept groups
    completion: np.ndarray      # float32 [rows, seq]: 1 on every completion token (kept or not)
    sampler_logps: np.ndarray   # float32 [rows, seq]: log p of each completion token at sampling time
    advantages: np.ndarray      # float32 [rows]
    rewards: np.ndarray         # float32 [rows]: weighted sum
    components: np.ndarray      # float32 [rows, n_rewards]: unweighted, in config order
    lengths: np.ndarray         # float32 [rows]: completion tokens
    kept: np.ndarray            # float32 [rows]: 1 if its group is in the loss
    texts: List[str]

    def micro_batches(self, micro_batch_size: int) -> List[Dict[str, torch.Tensor]]:
        rows = len(self.tokens)
        positions = np.broadcast_to(np.arange(self.tokens.shape[1]), self.tokens.shape)
        out = []
        for start in range(0, rows, micro_batch_size):
            part = slice(start, start + micro_batch_size)
            out.append({
                "tokens": torch.from_numpy(self.tokens[part].copy()),
                "labels": torch.from_numpy(self.labels[part].copy()),
                "position_ids": torch.from_numpy(positions[part].copy()),
                "mask": torch.from_numpy(self.mask[part].copy()),
                "completion": torch.from_numpy(self.completion[part].copy()),
                "sampler_logps": torch.from_numpy(self.sampler_logps[part].copy()),
                "advantages": torch.from_numpy(self.advantages[part].copy()),
                "rewards": torch.from_numpy(self.rewards[part].copy()),
                "components": torch.from_numpy(self.components[part].copy()),
                "lengths": torch.from_numpy(self.lengths[part].copy()),
                "kept": torch.from_numpy(self.kept[part].copy()),
            })
        return out


def build_rollout(prompts: Sequence[Prompt], completions, group_size: int, seq_length: int, pad_id: int,
                  tokenizer, reward_weights: Dict[str, float], scale_rewards: bool, drop_equal: bool,
                  any_kept_globally=None) -> Rollout:
    """Score `completions` (one per prompt × G, in order) and lay them out for training. `any_kept_globally`
    (kept count → global kept count) keeps every group when no DP rank has a group with reward spread: the
    loss then is the KL term alone instead of 0/0."""
    rows = len(completions)
    names = list(reward_weights)
    tokens = np.full((rows, seq_length), pad_id, np.int64)
    labels = np.full((rows, seq_length), pad_id, np.int64)
    mask = np.zeros((rows, seq_length), np.float32)
    logps = np.zeros((rows, seq_length), np.float32)
    rewards = np.zeros(rows, np.float32)
    components = np.zeros((rows, len(names)), np.float32)
    lengths = np.zeros(rows, np.float32)
    texts = []
    for i, completion in enumerate(completions):
        prompt = prompts[i // group_size]
        ids = list(prompt.ids) + list(completion.token_ids)
        if len(ids) - 1 > seq_length:
            raise ValueError(f"prompt + completion of {len(ids)} tokens exceed model.seq_length {seq_length}")
        k, p = len(ids) - 1, len(prompt.ids)
        tokens[i, :k], labels[i, :k] = ids[:-1], ids[1:]
        mask[i, p - 1:k] = 1.0
        logps[i, p - 1:k] = completion.logprobs
        text = tokenizer.decode(completion.token_ids, skip_special_tokens=False)
        texts.append(text)
        rewards[i], parts = compute_rewards(prompt.record, text, reward_weights)
        components[i] = [parts[name] for name in names]
        lengths[i] = len(completion.token_ids)
    advantages, spread = group_advantages(torch.from_numpy(rewards), group_size, scale=scale_rewards)
    kept = spread.numpy().astype(np.float32) if drop_equal else np.ones(rows, np.float32)
    if drop_equal and any_kept_globally is not None and any_kept_globally(int(kept.sum())) == 0:
        kept[:] = 1.0
    return Rollout(tokens, labels, mask * kept[:, None], mask, logps, advantages.numpy().astype(np.float32), rewards,
                   components, lengths, kept, texts)

"""Generation with the model being trained, for rollouts (GRPO) and training-time task evaluation.

The sampler is `myllm_mc.infer.Generator` (megatron-core's inference wrapper and static KV cache) built once on the
trainer's own model chunk, unwrapped from DDP: the weights are shared, never copied, so what it generates is what
the optimizer just produced. Generation runs in eval mode (no dropout) and hands the model back in train mode.
Every rank of a tensor/pipeline group must call it with the same requests (the generator's TP/PP contract).
"""

from __future__ import annotations

from typing import List, Sequence

from myllm_mc.infer import Generator, SamplingParams


class PolicySampler:
    def __init__(self, tokenizer, model_cfg, max_batch: int, seed: int):
        self.tokenizer, self.model_cfg = tokenizer, model_cfg
        self.max_batch, self.seed = max(int(max_batch), 1), seed
        self.generator = None

    def generator_for(self, trainer):
        if self.generator is None:
            chunk = trainer.model[0].module                   # DDP → Float16Module or GPTModel
            self.generator = Generator(chunk, self.tokenizer, self.model_cfg, max_batch_size=self.max_batch,
                                       max_seq_length=self.model_cfg.seq_length, seed=self.seed)
        return self.generator

    def generate(self, trainer, prompt_ids: List[List[int]], params) -> list:
        """Completions in request order; `params` is one SamplingParams or one per prompt."""
        generator = self.generator_for(trainer)
        for chunk in trainer.model:
            chunk.eval()
        try:
            return generator.generate(prompt_ids, params)
        finally:
            for chunk in trainer.model:
                chunk.train()

    def greedy(self, trainer, prompt_ids: Sequence[List[int]], max_new_tokens: int) -> list:
        """Greedy completions, `max_batch` requests at a time."""
        params = SamplingParams(temperature=0.0, max_new_tokens=max_new_tokens)
        out: list = []
        for first in range(0, len(prompt_ids), self.max_batch):
            out += self.generate(trainer, list(prompt_ids[first:first + self.max_batch]), params)
        return out

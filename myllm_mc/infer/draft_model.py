"""Speculative decoding with a draft model: a smaller model of the same tokenizer guesses k tokens, the target checks
them in one forward (`Generator._speculate`, `speculative.accept`).

    draft_cfg = inference_config("configs/tiny.yaml", ["model.num_layers=1", "model.hidden_size=128", ...])
    target = load_generator(cfg, "runs/tiny/checkpoints", speculative=4,
                            drafter=load_drafter(cfg, draft_cfg, "runs/tiny_draft/checkpoints", 4))

The draft drafts greedily (its argmax, k times): a deterministic guess is a point-mass proposal q = δ(d), for which
`accept`'s rule (accept d with probability p(d), else draw from p without d) emits tokens distributed as the
target's p, sampled or greedy, whatever the draft is. (Sampling the draft from its own distribution q would need
q's probabilities in the rule, min(1, p/q); argmax keeps one rule for both drafters.)

The drafter owns a second `Generator` on the draft model, with its prefix cache on: each call is one request
(the target's context so far, k greedy tokens, end tokens ignored). When it finishes, its prompt and reply are
stored in whole 16-token blocks, and the next call (the same context plus the accepted tokens) reuses every whole
block of it, so it prefills only the tail since the last block boundary (< 16 + the new tokens) and then decodes
k - 1 tokens. `ModelDrafter.stats()` reports the calls, the draft time and the tokens prefilled per call.
Measured (docs/benchmarks.md): it pays only where the draft is accepted often; on the CPU tiny preset a draft
forward costs ~45 % of a target step (per-call overhead), so a step at k = 4 breaks even at ~60 % acceptance.

Refused in one line before any weight is read (`check_draft`): a draft whose tokenizer is not the target's (the
files' SHA-256, and the tokenizer the draft checkpoint recorded), or whose vocabulary is not; a draft at a layout
where it cannot run (the pair runs in one process: a target over several processes, a draft config with tensor
or pipeline parallelism); a draft without `--speculative K`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional, Sequence

from .sampling import GenerationError, SamplingParams


class ModelDrafter:
    """A `speculative.Drafter`: the draft generator's greedy k-token continuation of `ids`."""

    def __init__(self, generator):
        self.generator = generator
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, ids: Sequence[int], k: int) -> List[int]:
        gen = self.generator
        room = min(k, gen.max_seq - len(ids))
        if room <= 0:                       # the context no longer fits the draft's: plain steps from here
            return []
        start = time.perf_counter()
        params = SamplingParams(temperature=0, max_new_tokens=room, ignore_eos=True)
        done = gen.generate([list(ids)], params)[0]
        self.calls += 1
        self.seconds += time.perf_counter() - start
        return done.token_ids

    def reset_stats(self) -> None:
        self.calls, self.seconds = 0, 0.0
        self.generator.reset_stats()

    def stats(self) -> dict:
        """Draft calls, their seconds, and the prompt tokens each prefilled vs took from its prefix cache."""
        s = self.generator.stats
        calls = max(self.calls, 1)
        return {"calls": self.calls, "seconds": self.seconds, "prefilled_per_call": s.prefill_tokens / calls,
                "reused_per_call": s.prefix_reused_tokens / calls}

    def line(self) -> str:
        s = self.stats()
        return (f"draft model: {s['calls']:,} calls, {s['seconds']:.2f} s, {s['prefilled_per_call']:.1f} prompt"
                f" tokens prefilled and {s['reused_per_call']:.1f} reused per call")


def _fingerprint(path) -> Optional[dict]:
    from myllm_mc.checkpoint.compat import tokenizer_fingerprint

    return tokenizer_fingerprint(str(path)) if path and Path(path).is_file() else None


def check_draft(cfg, draft_cfg, draft_checkpoint, speculative: int, world_size: int = 1,
                tokenizer_path=None) -> None:
    """GenerationError (one line) unless the draft can draft for the target; see the module docstring. Reads
    configs, tokenizer files and checkpoint metadata only."""
    from myllm_mc.checkpoint import store

    from .loader import resolve_checkpoint

    if speculative <= 0:
        raise GenerationError("a draft model drafts for speculative decoding, which is off — fix: add"
                              " --speculative K (e.g. 4 draft tokens per step)")
    if world_size > 1 or cfg.parallel.tensor > 1 or cfg.parallel.pipeline > 1:
        raise GenerationError("a draft model runs beside its target in one process, this run has several — fix:"
                              " drop --nproc-per-node and the tensor/pipeline --set, or drop --draft-config")
    if draft_cfg.parallel.tensor > 1 or draft_cfg.parallel.pipeline > 1:
        raise GenerationError(f"the draft config sets tensor={draft_cfg.parallel.tensor},"
                              f" pipeline={draft_cfg.parallel.pipeline}, but the draft runs in one process — fix:"
                              " set parallel.tensor and parallel.pipeline to 1 in the draft config")
    ours = _fingerprint(tokenizer_path or cfg.data.tokenizer)
    theirs = _fingerprint(draft_cfg.data.tokenizer)
    for found, which, path in ((ours, "target", tokenizer_path or cfg.data.tokenizer),
                               (theirs, "draft", draft_cfg.data.tokenizer)):
        if found is None:
            raise GenerationError(f"the {which} config's tokenizer {path!r} is not a file — fix: set"
                                  " data.tokenizer to the tokenizer.json both models use")
    _same_tokenizer(ours, theirs, f"the draft config's tokenizer {draft_cfg.data.tokenizer}")
    target = resolve_checkpoint(draft_checkpoint, draft_cfg)     # its config must be the draft checkpoint's
    if (Path(target) / store.META_FILE).is_file():
        recorded = store.read_meta(target).get("tokenizer")
        if recorded:
            _same_tokenizer(ours, recorded, f"the draft checkpoint {draft_checkpoint} (trained with it)")
    if draft_cfg.model.vocab_size < ours["vocab_size"]:
        raise GenerationError(f"the draft model has {draft_cfg.model.vocab_size} vocabulary rows, the tokenizer"
                              f" {ours['vocab_size']} — fix: a draft trained with the target's tokenizer")


def _same_tokenizer(ours: dict, theirs: dict, where: str) -> None:
    if theirs["vocab_size"] != ours["vocab_size"]:
        raise GenerationError(f"{where} has a vocabulary of {theirs['vocab_size']} tokens, the target's"
                              f" {ours['vocab_size']}: its drafts would be other tokens — fix: a draft model"
                              " trained with the target's tokenizer")
    if theirs["sha256"] != ours["sha256"]:
        raise GenerationError(f"{where} is another tokenizer than the target's (SHA-256 {theirs['sha256'][:12]} vs"
                              f" {ours['sha256'][:12]}): its token ids mean other text — fix: a draft model trained"
                              " with the target's tokenizer")


def load_drafter(cfg, draft_cfg, draft_checkpoint, speculative: int, max_seq_length: Optional[int] = None,
                 tokenizer_path=None) -> ModelDrafter:
    """`check_draft`, then the draft model in this process (after the target: one process group, both at TP=PP=1)
    behind its own generator with the prefix cache on."""
    from .loader import load_generator

    check_draft(cfg, draft_cfg, draft_checkpoint, speculative, tokenizer_path=tokenizer_path)
    limit = min(draft_cfg.model.seq_length, max_seq_length or cfg.model.seq_length)
    draft = load_generator(draft_cfg, draft_checkpoint, max_batch_size=1, max_seq_length=limit, seed=0,
                           tokenizer_path=tokenizer_path)
    return ModelDrafter(draft)

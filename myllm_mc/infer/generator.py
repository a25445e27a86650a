"""Batched generation with a KV cache on megatron-core: prefill, decode, per-request sampling, streaming.

    gen = load_generator(cfg, "runs/tiny/checkpoints")           # myllm_mc.infer.loader; any saved layout
    done = gen.generate([ids_a, ids_b], [SamplingParams(temperature=0), SamplingParams(top_p=0.9, seed=1)])
    for event in gen.stream([ids_a], SamplingParams(max_new_tokens=32)):   # one event per request per step
        print(event.text, end="")

    # a server: submit from anywhere in the driving thread, call step() in a loop
    rid = gen.submit(ids, SamplingParams(...)); events = gen.step(); gen.cancel(rid)

What runs: a step either admits queued requests (one prefill forward over their prompts, left-padded and masked,
then their first tokens) or decodes one token for every live request (one forward of one token per row, reading
the cache). New requests join between decode steps; finished rows leave at the end of the step. Every request's
output equals its output when generated alone (greedy: token for token, up to float rounding in the last bits of
the logits). The KV cache (`kv_cache.BatchCache`) is sized to the admitted requests (prompt + max new tokens,
rounded to blocks), not to the model's context.

Two forwards behind the same loop: in one process, for a dense local-spec model, `plain_forward.PlainForward`
(plain torch calls on the model's own parameters: no megatron module overhead, no bridge mode per call); in every
other layout (TP, PP, MoE, Transformer Engine), megatron's `GPTInferenceWrapper.run_one_forward_step` over a
`StaticInferenceContext` whose buffers are the same cache storage. `forward="megatron"` forces the second.

Why not megatron's `StaticInferenceEngine` + `TextGenerationController`: the controller applies one
`SamplingParams` to the whole batch (no per-request temperature/top-k/top-p/seed, no top-k with top-p), runs a
batch to completion (no joining), and steps the longer prompts of a ragged batch one token at a time.
The `DynamicInferenceEngine` needs flash-attn paged kernels (CUDA only).

Multi-process (TP/PP): every rank runs the same calls in the same order with the same requests; sampled tokens are
computed on the last pipeline stage and broadcast with megatron's `broadcast_from_last_pipeline_stage`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Union

import torch
import torch.distributed as dist

from .kv_cache import BatchCache, CacheShape, attention_mask, left_padded
from .plain_forward import PlainForward, unsupported
from .prefix_cache import PrefixCache, reusable
from .requests import Completion, RequestState, StreamEvent
from .sampling import GenerationError, SamplingParams, sample_rows
from .speculative import Drafter, accept, backoff, prompt_lookup


@dataclass
class GenerationStats:
    """Totals since the generator was made (or `reset_stats`)."""

    prefill_tokens: int = 0             # prompt tokens run through prefill forwards
    prefix_reused_tokens: int = 0       # prompt tokens whose K/V came from the prefix cache instead
    prefill_s: float = 0.0
    decode_tokens: int = 0              # tokens produced by decode steps
    decode_s: float = 0.0
    decode_steps: int = 0
    kv_slots_read: int = 0              # cache slots (rows × length) the decode steps attended over
    drafted_tokens: int = 0             # speculative decoding: draft tokens checked by the model
    accepted_tokens: int = 0            # ... and accepted
    kv_peak_tokens: int = 0             # the most cache slots (rows × length) allocated at once
    kv_peak_bytes: int = 0              # the bytes of that cache (its tensors, this rank)
    first_token_s: List[float] = field(default_factory=list)

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prefill_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s else 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else 0.0


def _agreed_seed() -> int:
    """A random base seed, the same on every rank (rank 0 draws it)."""
    seed = torch.tensor([int.from_bytes(os.urandom(7), "little")], dtype=torch.long)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(seed, src=0)
    return int(seed.item())


class Generator:
    """A megatron-core GPTModel (this rank's part of it) ready to generate; see the module docstring."""

    def __init__(self, model, tokenizer, model_cfg, max_batch_size: int = 8, max_seq_length: Optional[int] = None,
                 seed: Optional[int] = None, forward: str = "auto", prefix_cache_mib: float = 0.0,
                 speculative: int = 0, drafter: Optional[Drafter] = None):
        # megatron-core (seconds to import) on use: `myllm generate|chat|eval --help` and their input checks import
        # this package
        from megatron.core import parallel_state as ps
        from megatron.core.inference.model_inference_wrappers.gpt.gpt_inference_wrapper import GPTInferenceWrapper
        from megatron.core.inference.model_inference_wrappers.inference_wrapper_config import InferenceWrapperConfig
        from megatron.core.utils import get_model_config

        self.model_cfg = model_cfg
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.max_seq = max_seq_length or model_cfg.seq_length
        self.max_batch = max_batch_size
        self.shape = CacheShape.of(model)
        self.cache = BatchCache(self.shape, max_batch_size, self.max_seq)
        config = get_model_config(model)
        self.params_dtype = config.params_dtype
        wrapper_config = InferenceWrapperConfig(
            hidden_size=config.hidden_size, params_dtype=config.params_dtype,
            inference_batch_times_seqlen_threshold=-1,       # never split a batch into pipeline micro-batches
            padded_vocab_size=model.module.vocab_size if hasattr(model, "module") else model.vocab_size,
            inference_max_requests=max_batch_size, inference_max_seq_length=self.max_seq)
        self.wrapper = GPTInferenceWrapper(model, wrapper_config, inference_context=self.cache.context)
        self.wrapper.prep_model_for_inference()               # eval mode, context reset
        self.pipeline = ps.get_pipeline_model_parallel_world_size()
        self.last_stage = ps.is_pipeline_last_stage(ignore_virtual=True)
        if forward not in ("auto", "megatron", "plain"):
            raise ValueError(f"forward={forward!r}: auto, megatron or plain")
        why = unsupported(model)
        if forward == "plain" and why:
            raise GenerationError(f"the plain forward does not cover this model ({why}) — fix: forward='auto'")
        self.plain = PlainForward(model) if forward != "megatron" and why is None else None
        # off unless asked for: the weights must not change under it (a generator on a model being trained)
        self.prefix = PrefixCache(self.shape.layers, self.shape.bytes_per_slot(), int(prefix_cache_mib * 2**20))
        # draft tokens per decode step of a lone request (speculative.py); one process per pipeline (the accepted
        # count would have to cross stages)
        self.speculative = speculative if self.pipeline == 1 else 0
        self.drafter = prompt_lookup if drafter is None else drafter     # or a draft model (draft_model.py)
        self.base_seed = _agreed_seed() if seed is None else seed
        self.queue: List[RequestState] = []
        self.live: List[RequestState] = []                    # aligned with the cache rows
        self.stats = GenerationStats()
        self._next_id = 0
        self.end_tokens = frozenset(t for t in (tokenizer.eod, getattr(tokenizer, "im_end", None)) if t is not None)

    # --- requests -------------------------------------------------------------------------------------------
    def submit(self, prompt_ids: Sequence[int], params: Optional[SamplingParams] = None) -> int:
        """Queue one request (it joins at the next step); returns its id. Raises GenerationError on bad input."""
        params = params or SamplingParams()
        params.check()
        prompt = [int(t) for t in prompt_ids]
        if not prompt:
            raise GenerationError("empty prompt: there is nothing to continue — fix: pass at least one token"
                                  " (a non-empty --prompt)")
        if len(prompt) >= self.max_seq:
            raise GenerationError(f"prompt of {len(prompt)} tokens does not fit the {self.max_seq}-token context"
                                  f" with room to generate — fix: shorten it to at most {self.max_seq - 1} tokens")
        bad = [t for t in prompt if not 0 <= t < self.vocab_size]
        if bad:
            raise GenerationError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab_size - 1})"
                                  " — fix: encode the prompt with this model's tokenizer")
        request_id = self._next_id
        self._next_id += 1
        seed = params.seed if params.seed is not None else (self.base_seed * 1_000_003 + request_id) % 2**63
        stop_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else self.end_tokens)
        state = RequestState(request_id, prompt, params, stop_ids, torch.Generator().manual_seed(seed),
                             max_new_tokens=min(params.max_new_tokens, self.max_seq - len(prompt)))
        self.queue.append(state)
        return request_id

    def cancel(self, request_id: int) -> Optional[StreamEvent]:
        """Stop a queued or live request now; its final event, or None. Call it from the thread that calls step()
        (between steps)."""
        for state in self.queue:
            if state.request_id == request_id:
                self.queue.remove(state)
                return state.cancel()
        for state in self.live:
            if state.request_id == request_id and not state.finished:
                event = state.cancel()
                with torch.inference_mode():
                    self._drop_finished()
                return event
        return None

    def has_work(self) -> bool:
        return bool(self.queue or self.live)

    # --- the engine step ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> List[StreamEvent]:
        """Admit queued requests (prefill + first token) if there is room, else decode one token for every live
        request. Returns the new output of each request that advanced."""
        free = self.max_batch - len(self.live)
        if self.queue and free > 0:
            events = self._admit(self.queue[:free])
            del self.queue[:free]
        elif self.live:
            events = self._decode()
        else:
            return []
        self._drop_finished()
        return events

    def _drop_finished(self) -> None:
        keep = []
        for row, state in enumerate(self.live):
            if not state.finished:
                keep.append(row)
            elif self.prefix.enabled:       # prompt + reply: the next turn of a chat starts with them
                self.prefix.remember(state.prompt_ids + state.token_ids[:-1], self.cache, row, self.cache.pads[row])
        self.cache.keep(keep)
        self.live = [self.live[row] for row in keep]

    def _admit(self, states: List[RequestState]) -> List[StreamEvent]:
        start = time.perf_counter()
        prompts = [s.prompt_ids for s in states]
        tokens, positions, pads = left_padded(prompts, self.tokenizer.pad)
        length = tokens.size(1)
        first, reused = reusable(self.prefix, prompts, pads) if self.prefix.enabled else (0, [0] * len(states))
        joining = bool(self.live)
        # slots every row can still write: a live row one per token it may add, a new one its prompt and then
        # one per token after the first
        ahead = [s.max_new_tokens - len(s.token_ids) for s in self.live] + [s.max_new_tokens - 1 for s in states]
        self.cache.reserve(len(self.live) + len(states), max(self.cache.offset, length) + max(ahead) + self.speculative)
        self._note_cache()
        if joining:                                            # prefilled alone, then joined
            target = BatchCache(self.shape, len(states), length, block=1)
            target.reserve(len(states), length)
        else:
            target = self.cache
        target.start(pads)
        for row, (state, count) in enumerate(zip(states, reused)):
            state.cached_tokens = count
            if count:
                self.prefix.copy_into(state.prompt_ids, count, target, row, pads[row])
        target.offset = first
        logits = self._forward(target, tokens[:, first:], positions[:, first:])
        for row, state in enumerate(states):
            self.prefix.remember(state.prompt_ids, target, row, pads[row])
        if joining:
            self.cache.join(target)
        self.live += states
        events = self._sample_and_append(logits, states)
        self.stats.prefill_tokens += sum(len(s.prompt_ids) for s in states) - sum(reused)
        self.stats.prefix_reused_tokens += sum(reused)
        self.stats.prefill_s += time.perf_counter() - start
        self.stats.first_token_s += [s.first_token_at - s.submitted_at for s in states]
        return events

    def _decode(self) -> List[StreamEvent]:
        start = time.perf_counter()
        offset, pads = self.cache.offset, self.cache.pads
        if self.speculative and len(self.live) == 1:
            events = self._speculate(self.live[0])
            if events is not None:
                self.stats.decode_s += time.perf_counter() - start
                return events
        tokens = torch.tensor([[s.token_ids[-1]] for s in self.live], dtype=torch.long)
        positions = torch.tensor([[offset - pad] for pad in pads], dtype=torch.long)
        logits = self._forward(self.cache, tokens, positions)
        events = self._sample_and_append(logits, self.live)
        self.stats.decode_tokens += len(self.live)
        self.stats.decode_steps += 1
        self.stats.kv_slots_read += (offset + 1) * len(self.live)
        self.stats.decode_s += time.perf_counter() - start
        return events

    def _speculate(self, state: RequestState) -> Optional[List[StreamEvent]]:
        """One step for a lone request: its last token and up to k drafts in one forward, then the accepted ones
        (None when the drafter has no guess: a plain step follows)."""
        if state.draft_wait > 0:
            state.draft_wait -= 1
            return None
        room = min(self.speculative, state.max_new_tokens - len(state.token_ids) - 1,
                   self.cache.capacity[1] - self.cache.offset - 1)
        draft = self.drafter(state.prompt_ids + state.token_ids, room)[:room] if room > 0 else []
        if not draft:
            return None
        offset, pad = self.cache.offset, self.cache.pads[0]
        tokens = torch.tensor([[state.token_ids[-1], *draft]], dtype=torch.long)
        positions = torch.arange(offset - pad, offset - pad + len(draft) + 1).view(1, -1)
        logits = self._forward(self.cache, tokens, positions, last_only=False)
        picked, logprobs = accept(logits[0, :, :self.vocab_size], draft, state.params, state.generator)
        self.cache.offset = offset + len(picked)          # the K/V of rejected drafts lie beyond, unread
        state.draft_misses = state.draft_misses + 1 if len(picked) == 1 else 0
        state.draft_wait = backoff(state.draft_misses)
        event = state.extend(picked, logprobs, self.tokenizer)
        self.stats.drafted_tokens += len(draft)
        self.stats.accepted_tokens += len(picked) - 1
        self.stats.decode_tokens += len(event.token_ids)
        self.stats.decode_steps += 1
        self.stats.kv_slots_read += offset + len(draft) + 1
        return [event]

    def _forward(self, cache: BatchCache, tokens, positions, last_only: bool = True):
        """Logits for `tokens` [rows, n] written at the cache's offset (which then advances by n); the rows'
        padding and the future are masked."""
        offset, n = cache.offset, tokens.size(1)
        if self.plain is not None:
            ragged = any(cache.pads)
            allowed = ~attention_mask(cache.pads, offset, offset + n) if ragged else None
            logits = self.plain.forward(tokens, positions, cache, allowed, causal=not ragged, last_only=last_only)
            cache.offset = offset + n
            return logits
        context = cache.context
        context.enable_decode_mode() if offset > 0 else context.enable_prefill_mode()
        context.materialize_only_last_token_logits = last_only
        self.wrapper.inference_context = context
        try:
            return self.wrapper.run_one_forward_step({"tokens": tokens, "position_ids": positions,
                                                      "attention_mask": attention_mask(cache.pads, offset, offset + n)})
        finally:
            self.wrapper.inference_context = self.cache.context

    def _sample_and_append(self, logits, states: List[RequestState]) -> List[StreamEvent]:
        from megatron.core.inference.communication_utils import broadcast_from_last_pipeline_stage

        picked = None
        if self.last_stage:
            rows = logits[:, -1, :self.vocab_size]
            tokens, logprobs = sample_rows(rows, [s.params for s in states], [s.generator for s in states])
            picked = torch.stack([tokens.double(), logprobs.double()], dim=1).contiguous()
        if self.pipeline > 1:
            picked = broadcast_from_last_pipeline_stage([len(states), 2], torch.float64, picked)
        events = []
        for state, (token, logprob) in zip(states, picked.tolist()):
            if not state.finished:                            # a cancelled row still rides along this step
                events.append(state.append(int(token), float(logprob), self.tokenizer))
        return events

    # --- convenience ----------------------------------------------------------------------------------------
    def stream(self, prompts: Sequence[Sequence[int]],
               params: Union[SamplingParams, Sequence[SamplingParams], None] = None) -> Iterator[StreamEvent]:
        """Submit these prompts and yield every event until all of them have finished."""
        ids = set(self._submit_all(prompts, params))
        while ids:
            for event in self.step():
                if event.request_id in ids:
                    yield event
                    if event.finished:
                        ids.discard(event.request_id)

    def generate(self, prompts: Sequence[Sequence[int]],
                 params: Union[SamplingParams, Sequence[SamplingParams], None] = None) -> List[Completion]:
        """Run these prompts as one batch (in batches of max_batch_size); one Completion each, in order."""
        done = {}
        for event in self.stream(prompts, params):
            if event.finished:
                done[event.request_id] = event.completion
        order = sorted(done)
        return [done[i] for i in order]

    def _submit_all(self, prompts, params) -> List[int]:
        if params is None or isinstance(params, SamplingParams):
            params = [params] * len(prompts)
        if len(params) != len(prompts):
            raise GenerationError(f"{len(prompts)} prompts but {len(params)} sampling settings — fix: pass one each")
        for p in params:
            (p or SamplingParams()).check()
        return [self.submit(prompt, p) for prompt, p in zip(prompts, params)]

    def clear_prefix_cache(self) -> None:
        """Forget every stored prefix (call it after the weights change)."""
        self.prefix.clear()

    def reset_stats(self) -> None:
        self.stats = GenerationStats()
        self._note_cache()

    def _note_cache(self) -> None:
        if self.cache.allocated_tokens() > self.stats.kv_peak_tokens:
            self.stats.kv_peak_tokens = self.cache.allocated_tokens()
            self.stats.kv_peak_bytes = self.cache.allocated_bytes()

    def kv_cache_bytes(self) -> int:
        """Bytes of the KV cache allocated now on this rank (0 between batches: the storage is freed)."""
        return self.cache.allocated_bytes()

    def kv_peak_bytes(self) -> int:
        """Bytes of the largest KV cache allocated since the stats were reset, on this rank."""
        return self.stats.kv_peak_bytes

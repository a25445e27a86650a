"""The lm-evaluation-harness model `myllm`: lm_eval's three request kinds on our megatron-core model, no HF
conversion.

    myllm-lm-eval --model myllm --model_args config=configs/tiny.yaml,checkpoint=runs/tiny/checkpoints \
        --tasks myllm_local --include_path data/lm_eval
    lm = MyllmLM.from_loaded(model, tokenizer, cfg)         # in-process: `myllm eval --lm-eval`, training-time eval

What each request does (the semantics of lm_eval's own `hf` backend, so the figures agree with `--model hf` on
our HF export; docs/evaluation.md has the measured difference):
- loglikelihood: lm_eval's `TemplateLM` splits (context, continuation) into tokens exactly as for `hf`; each pair
  is cut to its last `seq_length + 1` tokens, batched longest first, right-padded, and scored from one causal
  forward: log-softmax in fp32 over the first `model.vocab_size` logits (the vocabulary the HF export keeps; the
  rows megatron pads it with are not part of it), summed over the continuation in fp32 (as `hf` sums them: a
  float64 sum differs from `hf` by up to ~1e-4 on a 250-nat continuation), plus whether every continuation token
  is the argmax.
- loglikelihood_rolling: lm_eval's disjoint rolling windows of `seq_length` tokens (the first one conditioned on
  the end-of-document id), each scored as a loglikelihood pair, summed per document.
- generate_until: the KV-cache `infer.Generator`, `batch_size` requests decoded together; greedy unless the task
  asks for sampling; the context cut from the left to leave room for `max_gen_toks`; decoding stops at the
  tokenizer's end tokens or a stop string, the text is decoded without special tokens and cut at the first stop
  string (lm_eval's own post-processing).

Runs in one process, like `myllm eval`: a checkpoint saved at any layout loads into it (dist_checkpointing
reshards). lm_eval's data-parallel splitting is not used (rank 0 of 1).
"""

from __future__ import annotations

import json
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from myllm_mc.infer import Generator, SamplingParams

from .lm_eval_tasks import LmEvalError, generation_layout_problem
from .perplexity import token_logits

MODEL_NAME = "myllm"


def _overrides(value) -> List[str]:
    """`set=` of --model_args: `a.b=1;c.d=x` (`,` separates lm_eval's own arguments, so `;` separates ours)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [part.strip() for part in str(value).split(";") if part.strip()]


@register_model(MODEL_NAME)
class MyllmLM(TemplateLM):
    """See the module docstring. Arguments (lm_eval `--model_args`): config, checkpoint, set (`;`-separated
    `--set` overrides), batch_size, max_length (default model.seq_length), max_gen_toks (default 256, as `hf`),
    seed (sampling tasks only)."""

    def __init__(self, config: Optional[str] = None, checkpoint: Optional[str] = None, set=None,   # noqa: A002
                 batch_size=8, max_length: Optional[int] = None, max_gen_toks: int = 256, seed: int = 0,
                 *, loaded=None, **ignored):
        super().__init__()
        if loaded is None:
            loaded = _load(config, checkpoint, _overrides(set))
        self.model, self._tokenizer, self.cfg = loaded
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 8   # "auto" → 8: no probing on CPU
        self._max_length = int(max_length or self.cfg.model.seq_length)
        self.max_gen_toks, self.seed = int(max_gen_toks), int(seed)
        self.vocab = self.cfg.model.vocab_size
        self._generator: Optional[Generator] = None
        self.model.eval()

    @classmethod
    def from_loaded(cls, model, tokenizer, cfg, batch_size: int = 8, **kwargs) -> "MyllmLM":
        """The model `myllm eval` (or a training run) already holds: no second load."""
        return cls(loaded=(model, tokenizer, cfg), batch_size=batch_size, **kwargs)

    # --- what TemplateLM needs ---------------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self._tokenizer.eod

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return str(self._tokenizer.path).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs) -> List[int]:
        # prompts lm_eval builds are program text: "<|im_start|>" there is the control token, as HF reads it
        return self._tokenizer.encode(string, errors="replace", allow_special=True)

    def tok_decode(self, tokens: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    # --- loglikelihood -----------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> List[Tuple[float, bool]]:
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        out: List[Optional[Tuple[float, bool]]] = [None] * len(requests)
        for first in range(0, len(order), self.batch_size):
            rows = []
            for i in order[first:first + self.batch_size]:
                _, context, continuation = requests[i]
                if not continuation or len(continuation) > self.max_length:
                    raise LmEvalError(f"a continuation of {len(continuation)} tokens cannot be scored with a"
                                      f" {self.max_length}-token context — fix: a task whose answers fit the model")
                ids = (list(context) + list(continuation))[-(self.max_length + 1):]
                rows.append((i, ids[:-1], list(continuation)))
            width = max(len(inputs) for _, inputs, _ in rows)
            tokens = np.full((len(rows), width), self.eot_token_id, dtype=np.int64)   # right padding: causal,
            for r, (_, inputs, _) in enumerate(rows):                                  # never attended to
                tokens[r, :len(inputs)] = inputs
            logprobs = F.log_softmax(token_logits(self.model, torch.from_numpy(tokens))[..., :self.vocab].float(),
                                     dim=-1).cpu()
            for r, (i, inputs, continuation) in enumerate(rows):
                n, k = len(continuation), len(inputs)
                picked = logprobs[r, k - n:k]
                target = torch.tensor(continuation, dtype=torch.long)
                ll = float(picked.gather(-1, target[:, None]).sum())     # fp32 sum, as `hf` adds them
                greedy = bool((picked.argmax(-1) == target).all())
                out[i] = (ll, greedy)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], (ll, greedy))
        return out  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> List[float]:
        windows, owners = [], []
        for n, request in enumerate(requests):
            (text,) = request.args
            for window in get_rolling_token_windows(token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                                                    max_seq_len=self.max_length, context_len=1):
                windows.append((None, *make_disjoint_window(window)))
                owners.append(n)
        scores = self._loglikelihood_tokens(windows) if windows else []
        totals = [0.0] * len(requests)
        for n, (ll, _) in zip(owners, scores):
            totals[n] += ll
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # --- generation --------------------------------------------------------------------------------------
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = Generator(self.model, self._tokenizer, self.cfg.model, max_batch_size=self.batch_size,
                                        max_seq_length=self.max_length, seed=self.seed)
        return self._generator

    def generate_until(self, requests, disable_tqdm: bool = False) -> List[str]:
        eos = self.tok_decode([self.eot_token_id], skip_special_tokens=False)
        groups: dict = {}
        for n, request in enumerate(requests):                   # one group per distinct gen_kwargs
            context, gen_kwargs = request.args
            groups.setdefault(json.dumps(gen_kwargs, sort_keys=True, default=str), []).append((n, context))
        out: List[str] = [""] * len(requests)
        for key, members in groups.items():
            kwargs = normalize_gen_kwargs(json.loads(key), self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen_toks = int(kwargs.pop("max_gen_toks"))
            room = self.max_length - max_gen_toks
            if room < 1:
                raise LmEvalError(f"max_gen_toks {max_gen_toks} leaves no room for a prompt in the"
                                  f" {self.max_length}-token context — fix: a smaller max_gen_toks")
            sample = bool(kwargs.get("do_sample")) and float(kwargs.get("temperature", 0.0)) > 0
            params = SamplingParams(max_new_tokens=max_gen_toks, stop=tuple(s for s in until if s),
                                    temperature=float(kwargs.get("temperature", 1.0)) if sample else 0.0,
                                    top_p=float(kwargs.get("top_p", 1.0) or 1.0) if sample else 1.0,
                                    top_k=int(kwargs.get("top_k", 0) or 0) if sample else 0)
            prompts = [self.tok_encode(context)[-room:] or [self.prefix_token_id] for _, context in members]
            done = self.generator().generate(prompts, params)
            for (n, context), completion in zip(members, done):
                text = postprocess_generated_text(self.tok_decode(completion.token_ids), stop=until,
                                                  think_end_token=None)
                out[n] = text
                self.cache_hook.add_partial("generate_until", (context, json.loads(key)), text)
        return out


def _load(config: Optional[str], checkpoint: Optional[str], overrides: List[str]):
    """(model, tokenizer, cfg) for `--model_args config=...,checkpoint=...`, with one-line errors."""
    from myllm_mc.config import load
    from myllm_mc.infer import inference_config, load_model_for_inference, load_tokenizer, resolve_checkpoint
    from myllm_mc.infer.loader import INFERENCE_LAYOUT
    from myllm_mc.parallel.state import init_distributed

    if not config or not checkpoint:
        raise LmEvalError("--model myllm needs --model_args config=CONFIG.yaml,checkpoint=DIR (and set=KEY=VALUE;..."
                          " for overrides)")
    problem = generation_layout_problem(load(config, [*INFERENCE_LAYOUT, *overrides]))
    if problem:
        raise LmEvalError(problem)
    cfg = inference_config(config, overrides, world_size=1)
    resolved = resolve_checkpoint(checkpoint, cfg)
    tokenizer = load_tokenizer(cfg)
    init_distributed(cfg)
    return load_model_for_inference(cfg, resolved), tokenizer, cfg

"""`myllm chat CONFIG --checkpoint DIR`: talk to a model in the terminal, replies streamed as they are decoded.

The conversation is rendered with the tokenizer's chat template (ChatML, the same rendering SFT trains on) and
the whole history is sent each turn; when it no longer fits the context the oldest turns are dropped.
Commands: /reset clears the history, /exit (or Ctrl-D) quits. Ctrl-C during a reply stops that reply (the part
already shown stays in the history) and returns to the prompt; Ctrl-C at the prompt does not quit.
One process (chat reads the keyboard on one rank).
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace

from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.parallel.launch import launcher_world_size

from .generate_cli import add_sampling_arguments, draft_config, sampling_from
from .loader import inference_config, load_generator, load_tokenizer, resolve_checkpoint
from .numbers import speculation_note
from .sampling import GenerationError

PROMPT = "you> "
REPLY = "assistant> "


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm chat", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    add_sampling_arguments(parser)
    parser.add_argument("--system", default=None, help="a system message that starts every conversation")
    parser.add_argument("--ignore-eos", action="store_true", help="do not stop at end tokens (length only)")
    return parser


class _StopFlag:
    """SIGINT sets a flag while a reply is decoding; the loop checks it between decode steps, so the engine is
    never interrupted in the middle of a forward pass."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def __enter__(self):
        self.raised = False
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def fit_history(tokenizer, system, history, budget: int):
    """Prompt ids for system + history, dropping the oldest turns until they fit `budget` tokens."""
    history = list(history)
    while True:
        messages = ([{"role": "system", "content": system}] if system else []) + history
        ids, _ = tokenizer.encode_chat(messages, add_generation_prompt=True)
        if len(ids) <= budget or len(history) <= 1:
            return ids, history
        history = history[2:] if len(history) > 2 else history[1:]


def main(argv) -> int:
    args = _parser().parse_args(argv)
    if (launcher_world_size() or 1) > 1:
        print("myllm chat: runs in one process — fix: start it without torchrun/srun (use myllm generate for"
              " multi-process generation)", file=sys.stderr)
        return 2
    try:
        cfg = inference_config(args.config, args.overrides, world_size=1)
        resolve_checkpoint(args.checkpoint, cfg)
        load_tokenizer(cfg)
        params = replace(sampling_from(args), ignore_eos=args.ignore_eos)
        draft_cfg = draft_config(args, cfg)
    except GenerationError as err:
        print(f"myllm chat: {err}", file=sys.stderr)
        return 2
    print(f"loading {args.checkpoint} ...", flush=True)
    drafter = None
    if draft_cfg is not None:
        from .draft_model import load_drafter
        drafter = load_drafter(cfg, draft_cfg, args.draft_checkpoint, args.speculative, args.max_seq_length)
    gen = load_generator(cfg, args.checkpoint, max_batch_size=1, max_seq_length=args.max_seq_length, seed=args.seed,
                         speculative=args.speculative, drafter=drafter)
    tokenizer = gen.tokenizer
    budget = gen.max_seq - min(params.max_new_tokens, gen.max_seq // 2)
    print("chat ready — /reset clears the history, /exit or Ctrl-D quits, Ctrl-C stops a reply", flush=True)
    history: list = []
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            break
        except KeyboardInterrupt:
            print("\n(Ctrl-C stops a reply; /exit or Ctrl-D quits)")
            continue
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = []
            print("(history cleared)")
            continue
        if not text:
            continue
        ids, history = fit_history(tokenizer, args.system, history + [{"role": "user", "content": text}], budget)
        if len(ids) > budget:
            print(f"(message too long: {len(ids)} tokens with the template; the context leaves {budget}"
                  " — shorten it)")
            history = history[:-1]
            continue
        gen.reset_stats()
        reply, completion = _reply(gen, ids, params)
        history.append({"role": "assistant", "content": reply})
        if completion is not None:
            drafts = speculation_note(gen.stats.drafted_tokens, gen.stats.acceptance_rate)
            print(f"  [{completion.completion_tokens} tokens · {completion.decode_tokens_per_s:.1f} tok/s ·"
                  f" first token {completion.time_to_first_token_s * 1e3:.0f} ms · context {len(ids)}/{gen.max_seq}"
                  f" · {completion.cached_tokens} cached{drafts}]")
    # megatron-core: see generator.py
    from myllm_mc.parallel.state import destroy
    destroy()
    return 0


def _reply(gen, ids, params):
    print(REPLY, end="", flush=True)
    shown, completion = [], None
    with _StopFlag() as stop:
        request = gen.submit(ids, params)
        while gen.has_work():
            if stop.raised:
                event = gen.cancel(request)
                if event is not None:
                    shown.append(event.text)
                    print(event.text, end="")
                print(" [stopped]", flush=True)
                return "".join(shown), None
            for event in gen.step():
                print(event.text, end="", flush=True)
                shown.append(event.text)
                if event.finished:
                    completion = event.completion
    print(flush=True)
    return completion.text if completion else "".join(shown), completion

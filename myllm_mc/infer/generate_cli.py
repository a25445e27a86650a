"""`myllm generate CONFIG --checkpoint DIR (--prompt TEXT | --prompts FILE.jsonl) [sampling flags]`.

--prompt streams the continuation to stdout. --prompts reads JSONL, one request a line: {"prompt": "..."} or
{"messages": [{"role": "user", "content": "..."}]} (rendered with the chat template, as in SFT), optionally with
its own "max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"; it writes JSONL (to --output or
stdout): text, token counts, finish reason, tokens/s. The last line (stderr) gives prefill and decode tokens/s,
time to first token, the KV cache's bytes beside the planner's figure, and the decode bandwidth bound.

`--speculative K` drafts K tokens per step of a lone request by prompt lookup, or with a draft model of the same
tokenizer: `--draft-config CFG --draft-checkpoint DIR [--draft-set KEY=VALUE ...]` (infer/draft_model.py; one
process); the numbers line then reports the acceptance, and the line before it the draft model's calls and time.

`--nproc-per-node N --set parallel.tensor=N` (or pipeline) runs it over N processes, as for training.
Every input is checked before any process starts: a bad config, checkpoint path, prompt file, empty prompt or a
prompt longer than the context exits 2 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import torch.distributed as dist

from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.config.loader import did_you_mean
from myllm_mc.jsonl import MalformedJsonl, read_jsonl
from myllm_mc.locking import NewOutput, OutputError, check_output_path
from myllm_mc.parallel.launch import launcher_world_size, relaunch_under_torchrun

from .loader import inference_config, load_generator, load_tokenizer, resolve_checkpoint
from .numbers import device_bandwidth, run_numbers
from .sampling import DEFAULT_TEMPERATURE, GenerationError, SamplingParams

PER_LINE = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop")
RECORD_KEYS = ("prompt", "messages", "id", *PER_LINE)     # a --prompts line may hold only these (as the server: 422)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags users know from other tools (llama.cpp, vLLM, HF). The temperature's default is SamplingParams'
    (DEFAULT_TEMPERATURE); the values are checked by SamplingParams.check (`sampling_from`)."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint.dir of a training run, or one step directory")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help="0 = greedy (default %(default)s, as the library and the server)")
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling (1 = off)")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    parser.add_argument("--stop", action="append", default=[], help="stop string (repeatable); cut from the text")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="longest sequence (default model.seq_length); the KV cache is sized to the requests")
    parser.add_argument("--speculative", type=int, default=0, metavar="K",
                        help="speculative decoding of a lone request: K draft tokens per step (0 = off); drafted by"
                        " prompt lookup, or by --draft-config/--draft-checkpoint")
    parser.add_argument("--draft-config", default=None, metavar="CFG",
                        help="a draft model's config (same tokenizer) for --speculative: it drafts greedily")
    parser.add_argument("--draft-checkpoint", default=None, metavar="DIR", help="the draft model's checkpoint")
    parser.add_argument("--draft-set", dest="draft_overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE", help="override a field of the draft config, as --set")


def draft_config(args, cfg, world_size: int = 1, tokenizer_path=None):
    """The draft model's config, checked against the target (`draft_model.check_draft`), or None without
    --draft-config/--draft-checkpoint; GenerationError (one line) before any weight is read."""
    if args.draft_config is None and args.draft_checkpoint is None:
        if args.draft_overrides:
            raise GenerationError("--draft-set without a draft model — fix: add --draft-config CFG"
                                  " --draft-checkpoint DIR, or drop --draft-set")
        return None
    if args.draft_config is None or args.draft_checkpoint is None:
        missing = "--draft-config" if args.draft_config is None else "--draft-checkpoint"
        raise GenerationError(f"a draft model needs both --draft-config and --draft-checkpoint — fix: add {missing}")
    from .draft_model import check_draft

    draft_cfg = inference_config(args.draft_config, args.draft_overrides, world_size=1)
    check_draft(cfg, draft_cfg, args.draft_checkpoint, args.speculative, world_size, tokenizer_path)
    return draft_cfg


def sampling_from(args, line: dict | None = None) -> SamplingParams:
    values = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, seed=args.seed, stop=tuple(args.stop), logprobs=getattr(args, "logprobs", False))
    for key in PER_LINE:
        if line and key in line:
            values[key] = tuple(line[key]) if key == "stop" else line[key]
    params = SamplingParams(**values)
    params.check()
    return params


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="myllm generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    add_sampling_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="one prompt; the continuation streams to stdout")
    source.add_argument("--prompts", help="JSONL file of requests")
    parser.add_argument("--output", help="JSONL results (default stdout)")
    parser.add_argument("--batch-size", type=int, default=8, help="requests decoded together")
    parser.add_argument("--logprobs", action="store_true", help="include log-probs of the chosen tokens")
    parser.add_argument("--nproc-per-node", type=int, default=None, help="start this many processes with torchrun")
    return parser


def read_requests(args, tokenizer, max_seq: int) -> list[dict]:
    """[{"ids": [...], "params": SamplingParams, "echo": {...}}] or a one-line GenerationError."""
    if args.prompt is not None:
        lines = [{"prompt": args.prompt}]
    else:
        path = Path(args.prompts)
        if not path.is_file():
            raise GenerationError(f"prompts file {args.prompts!r} not found — fix: pass a JSONL file with one"
                                  ' {"prompt": "..."} per line')
        lines = []
        try:
            for n, line in read_jsonl(path):
                if not isinstance(line, dict) or not ("prompt" in line or "messages" in line):
                    raise GenerationError(f'{path}:{n}: needs "prompt" or "messages" — fix: e.g. {{"prompt": "Once"}}')
                unknown = [key for key in line if key not in RECORD_KEYS]
                if unknown:
                    hint = did_you_mean(unknown[0], RECORD_KEYS) or f"the keys are {', '.join(RECORD_KEYS)}"
                    raise GenerationError(f"{path}:{n}: unknown key {unknown[0]!r} — fix: {hint}")
                lines.append(line)
        except MalformedJsonl as err:
            raise GenerationError(str(err)) from None
        if not lines:
            raise GenerationError(f"{path}: no requests — fix: one JSON object per line")
    requests = []
    for n, line in enumerate(lines, 1):
        where = "--prompt" if args.prompt is not None else f"{args.prompts}:{n}"
        if "messages" in line:
            try:
                ids, _ = tokenizer.encode_chat(line["messages"], add_generation_prompt=True)
            except ValueError as err:
                raise GenerationError(f"{where}: {err}") from None
        else:
            ids = tokenizer.encode(str(line["prompt"]))
        if not ids:
            raise GenerationError(f"{where}: empty prompt — fix: give some text to continue")
        if len(ids) >= max_seq:
            raise GenerationError(f"{where}: prompt of {len(ids)} tokens does not fit the {max_seq}-token context"
                                  f" — fix: shorten it to at most {max_seq - 1} tokens")
        try:
            params = sampling_from(args, line)
        except (TypeError, GenerationError) as err:
            raise GenerationError(f"{where}: {err}") from None
        requests.append({"ids": ids, "params": params, "echo": {k: line[k] for k in ("prompt", "messages", "id")
                                                                 if k in line}})
    return requests


def check_output(output, inputs, checkpoint=None) -> None:
    """--output: not under a file, not a directory, not one of the inputs nor in the checkpoint (it is replaced when
    the run ends), not being written by another run (`NewOutput`: the lock, refused before the model loads)."""
    if not output:
        return
    path = check_output_path(output, "--output")
    if path.is_dir():
        raise GenerationError(f"--output {output} is a directory — fix: name a file, e.g. {path / 'out.jsonl'}")
    for flag, given in inputs:
        if given and path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise GenerationError(f"--output {output} is the {flag} file: writing would overwrite the input — fix:"
                                  " write the results to another file")
    if checkpoint and Path(checkpoint).is_dir() and path.absolute().resolve().is_relative_to(Path(checkpoint).resolve()):
        raise GenerationError(f"--output {output} lies in the checkpoint {checkpoint}: writing would change it — fix:"
                              " write the results to another directory")
    NewOutput(path, "--output", replace=True).refuse_held()


def _checked_inputs(args, world_size):
    check_output(args.output, [("--prompts", args.prompts)])
    cfg = inference_config(args.config, args.overrides, world_size=world_size)
    check_output(args.output, [("config", args.config), ("data.tokenizer", cfg.data.tokenizer)], args.checkpoint)
    resolve_checkpoint(args.checkpoint, cfg)
    tokenizer = load_tokenizer(cfg)
    max_seq = args.max_seq_length or cfg.model.seq_length
    args.draft_cfg = draft_config(args, cfg, world_size)
    return cfg, tokenizer, read_requests(args, tokenizer, max_seq)


def main(argv) -> int:
    args = _parser().parse_args(argv)
    launched = launcher_world_size()
    world = launched or args.nproc_per_node or 1
    try:
        cfg, tokenizer, requests = _checked_inputs(args, world)
    except (GenerationError, OutputError) as err:
        print(f"myllm generate: {err}", file=sys.stderr)
        return 2
    if launched is None and world > 1:
        return relaunch_under_torchrun(["-m", "myllm_mc.cli", "generate", *argv], world)
    return _run(args, cfg, requests)


def _run(args, cfg, requests) -> int:
    # megatron-core with the model, after the inputs are checked (see generator.py)
    from myllm_mc.parallel.state import destroy

    drafter = None
    if args.draft_cfg is not None:
        from .draft_model import load_drafter
        drafter = load_drafter(cfg, args.draft_cfg, args.draft_checkpoint, args.speculative, args.max_seq_length)
    gen = load_generator(cfg, args.checkpoint, max_batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                         speculative=args.speculative, drafter=drafter)
    lead = dist.get_rank() == 0
    try:
        if args.prompt is not None:
            [request] = requests
            for event in gen.stream([request["ids"]], request["params"]):
                if lead:
                    print(event.text, end="", flush=True)
            if lead:
                print(flush=True)
        else:
            _run_jsonl(args, gen, requests, lead)
        bandwidth, source = device_bandwidth(cfg.plan.gpu)
        if lead:
            if drafter is not None:
                print(drafter.line(), file=sys.stderr, flush=True)
            print(run_numbers(gen, bandwidth, source).line(), file=sys.stderr, flush=True)
    finally:
        destroy()
    return 0


def _run_jsonl(args, gen, requests, lead: bool) -> None:
    """--output is written to a temporary of this run and renamed over the path at the end (`NewOutput`): a killed or
    interrupted run, or a second run on the same file, leaves the previous results whole (it was truncated at start)."""
    new = NewOutput(args.output, "--output", replace=True) if (lead and args.output) else None
    with new or contextlib.nullcontext():
        _write_jsonl(args, gen, requests, lead, open(new.tmp, "w") if new else sys.stdout)


def _write_jsonl(args, gen, requests, lead: bool, out) -> None:
    ids = [gen.submit(r["ids"], r["params"]) for r in requests]
    echo = dict(zip(ids, requests))
    finished, written, done = {}, 0, 0          # results are written in input order
    try:
        while gen.has_work():
            for event in gen.step():
                if not event.finished:
                    continue
                finished[event.request_id] = event.completion
                done += 1
                while written < len(ids) and ids[written] in finished:
                    c = finished.pop(ids[written])
                    written += 1
                    if not lead:
                        continue
                    record = {**echo[c.request_id]["echo"], "text": c.text, "finish_reason": c.finish_reason,
                              "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                              "tokens_per_s": round(c.decode_tokens_per_s, 2),
                              "time_to_first_token_s": round(c.time_to_first_token_s, 4),
                              "token_ids": c.token_ids}
                    if c.logprobs is not None:
                        record["logprobs"] = c.logprobs
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                if lead and args.output:
                    print(f"\r{done}/{len(requests)} requests", end="", file=sys.stderr, flush=True)
        if lead and args.output:
            print(file=sys.stderr)
    finally:
        if out is not sys.stdout:
            out.close()

"""`myllm eval CONFIG --checkpoint DIR [--checkpoint DIR2 ...] [--text FILE | --data PREFIX | --valid]
[--tasks all|a,b] [--mc FILE.jsonl] [--lm-eval TASKS] [--out report.json]`.

Perplexity and bits per byte on a text (.txt / .jsonl "text"), an indexed dataset prefix or the config's
validation split; task accuracy by greedy generation on the shipped verifiable tasks; multiple choice by
log-likelihood from a {"context", "choices", "gold"} JSONL; lm-evaluation-harness tasks (`--lm-eval`, the shipped
local ones in data/lm_eval or your own YAMLs) through our `myllm` lm_eval backend, in this process. Several checkpoints (`--checkpoint` repeated, or
`--compare A B C`) give one table, rows = metrics, columns = checkpoints. Every input is read and checked before
a model loads: a bad one exits 2 with one line. Runs in one process (eval of a model that fits one device).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Optional

from myllm_mc.config import load
from myllm_mc.config.arguments import add_config_arguments
from myllm_mc.errors import fail
from myllm_mc.infer import (
    GenerationError,
    Generator,
    inference_config,
    load_model_for_inference,
    load_tokenizer,
    resolve_checkpoint,
)
from myllm_mc.infer.loader import INFERENCE_LAYOUT
from myllm_mc.parallel.launch import launcher_world_size

from . import inputs
from .inputs import EvalError
from .lm_eval_run import LmEvalRun
from .lm_eval_tasks import LmEvalError, checked_tasks, generation_layout_problem
from .multiple_choice import read_mc_file, score_choices
from .perplexity import score_stream
from .report import comparison_table, summary_line, write_report
from .tasks import task_accuracy

PROG = "myllm eval"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="checkpoint.dir of a run or one step directory (repeat to compare)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="DIR", help="checkpoints to compare (same as"
                        " repeating --checkpoint)")
    text = parser.add_mutually_exclusive_group()
    text.add_argument("--text", help="perplexity on a .txt file (one document) or .jsonl ({\"text\": ...} per line)")
    text.add_argument("--data", help="perplexity on an indexed dataset prefix (PREFIX.bin/.idx from preprocessing)")
    text.add_argument("--valid", action="store_true", help="perplexity on the validation split of data.blend")
    parser.add_argument("--max-documents", type=int, default=None, help="score only the first N documents")
    parser.add_argument("--tasks", help="task accuracy: all, or a comma list (e.g. arithmetic,format)")
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each task")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="greedy tokens per task answer (the"
                        " longest shipped answers, corpus_next_verse, are ~60 tokens; decoding stops at <|im_end|>)")
    parser.add_argument("--mc", help='multiple-choice JSONL: {"context": str, "choices": [str, ...], "gold": int}')
    parser.add_argument("--mc-limit", type=int, default=None, help="first N valid multiple-choice questions")
    parser.add_argument("--lm-eval", metavar="TASKS", help="lm-evaluation-harness tasks or groups, comma-separated"
                        " (e.g. myllm_local; needs the lm_eval extra)")
    parser.add_argument("--lm-eval-path", action="append", default=[], metavar="DIR", help="a folder of lm-eval"
                        " task YAMLs besides data/lm_eval (repeatable)")
    parser.add_argument("--lm-eval-limit", type=float, default=None, metavar="N", help="first N documents of each"
                        " lm-eval task (a fraction below 1: that share)")
    parser.add_argument("--lm-eval-fewshot", type=int, default=None, metavar="K", help="few-shot examples per"
                        " lm-eval prompt (default: each task's own)")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass / requests decoded"
                        " together")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--nproc-per-node", type=int, default=None, help="only 1 (eval runs in one process)")
    return parser


class _Progress:
    """At most ~10 lines per phase on stderr: long evaluations show they are moving, CI logs stay short."""

    def __init__(self, label: str):
        self.label, self.shown, self.start = label, -1, time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != self.shown:
            self.shown = tenth
            print(f"  {self.label}: {done}/{total} ({time.perf_counter() - self.start:.1f} s)", file=sys.stderr,
                  flush=True)


def _checked(args):
    """Everything that can be known before a model loads: (cfg, tokenizer, checkpoints, source, records, mc)."""
    if (args.nproc_per_node or 1) > 1 or (launcher_world_size() or 1) > 1:
        raise EvalError("eval runs in one process — fix: drop --nproc-per-node (and torchrun); a checkpoint saved"
                        " at any layout loads into one process")
    checkpoints = list(args.checkpoint) + list(args.compare)
    if not checkpoints:
        raise EvalError("no checkpoint — fix: --checkpoint DIR (repeat it, or --compare A B, to compare several)")
    if not (args.text or args.data or args.valid or args.tasks or args.mc or args.lm_eval):
        raise EvalError("nothing to evaluate — fix: add --text FILE, --data PREFIX or --valid (perplexity),"
                        " --tasks all (task accuracy), --mc FILE.jsonl (multiple choice) and/or --lm-eval TASKS")
    if args.batch_size < 1 or args.max_new_tokens < 1 or (args.max_documents is not None and args.max_documents < 1):
        raise EvalError("--batch-size, --max-new-tokens and --max-documents must be at least 1 — fix: e.g."
                        " --batch-size 8")
    if args.lm_eval:
        problem = generation_layout_problem(load(args.config, [*INFERENCE_LAYOUT, *args.overrides]))
        if problem:
            raise EvalError(problem)
    cfg = inference_config(args.config, args.overrides, world_size=1)
    try:
        resolved = [str(resolve_checkpoint(c, cfg)) for c in checkpoints]
    except GenerationError as err:
        raise EvalError(str(err)) from None
    if not cfg.data.tokenizer or not Path(cfg.data.tokenizer).is_file():
        raise EvalError(f"tokenizer {cfg.data.tokenizer!r} not found — fix: --set data.tokenizer=PATH (the"
                        " tokenizer.json the model was trained with)")
    tokenizer = load_tokenizer(cfg)
    if tokenizer.vocab_size > cfg.model.vocab_size:
        raise EvalError(f"tokenizer has {tokenizer.vocab_size} entries but the model {cfg.model.vocab_size}"
                        " — fix: use the tokenizer the model was trained with (data.tokenizer)")
    source = None
    if args.text:
        source = inputs.text_source(args.text, tokenizer, args.max_documents)
    elif args.data:
        source = inputs.data_source(args.data, tokenizer, args.max_documents)
    elif args.valid:
        source = inputs.valid_source(cfg, tokenizer, args.max_documents)
    records = inputs.task_records(args.tasks, args.limit) if args.tasks else None
    mc = read_mc_file(args.mc, args.mc_limit) if args.mc else None
    lm_eval = None
    if args.lm_eval:
        manager, names = checked_tasks(args.lm_eval, args.lm_eval_path)
        lm_eval = LmEvalRun(manager, names, args.lm_eval_limit, args.lm_eval_fewshot)
    _check_out(args, cfg, resolved)
    return cfg, tokenizer, list(zip(checkpoints, resolved)), source, records, mc, lm_eval


def _check_out(args, cfg, resolved) -> None:
    """--out must not be an input (`--out docs.jsonl --text docs.jsonl` replaced the text by the report) nor lie in
    a checkpoint."""
    if not args.out:
        return
    out = Path(args.out)
    inputs = [("--text", args.text), ("--mc", args.mc), ("config", args.config), ("data.tokenizer", cfg.data.tokenizer)]
    inputs += [("--data", f"{args.data}{ext}") for ext in (".bin", ".idx")] if args.data else []
    for flag, given in inputs:
        if given and out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise EvalError(f"--out {args.out} is the {flag} file: the report would overwrite it — fix: write the"
                            " report to another file")
    for checkpoint in resolved:
        if out.absolute().resolve().is_relative_to(Path(checkpoint).resolve()):
            raise EvalError(f"--out {args.out} lies in the checkpoint {checkpoint} — fix: write the report elsewhere")


def main(argv) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg, tokenizer, checkpoints, source, records, mc, lm_eval = _checked(args)
    except (EvalError, LmEvalError, FileNotFoundError) as err:
        return fail(PROG, str(err), 2, err)
    if mc is not None:
        print(mc.summary(), file=sys.stderr, flush=True)
    return _run(args, cfg, tokenizer, checkpoints, source, records, mc, lm_eval)


def evaluate_model(model, tokenizer, cfg, source, records, mc, batch_size: int = 8,
                   max_new_tokens: int = 64, label: str = "", lm_eval: Optional["LmEvalRun"] = None) -> dict:
    """Every requested figure of one loaded model (the library entry point the CLI and tests share)."""
    result = {}
    model.eval()
    seq = cfg.model.seq_length
    if source is not None:
        scored = score_stream(model, source.stream, seq, source.nbytes, batch_size,
                              _Progress(f"{label}perplexity windows"))
        result["perplexity"] = {"source": source.name, "documents": source.documents, "seq_length": seq,
                                **scored.as_dict()}
    if mc is not None:
        result["multiple_choice"] = score_choices(model, tokenizer, mc, seq, batch_size * 2,
                                                  _Progress(f"{label}multiple choice (context, choice) pairs"))
    if records is not None:
        generator = Generator(model, tokenizer, cfg.model, max_batch_size=batch_size, seed=0)
        result["tasks"] = task_accuracy(generator, records, max_new_tokens, _Progress(f"{label}task prompts"))
    if lm_eval is not None:
        print(f"  {label}lm-eval: {', '.join(lm_eval.names)}", file=sys.stderr, flush=True)
        result["lm_eval"] = lm_eval.run(model, tokenizer, cfg, batch_size)
    return result


def _run(args, cfg, tokenizer, checkpoints, source, records, mc, lm_eval) -> int:
    # megatron-core with the model, after the inputs are checked (see infer/generator.py)
    from myllm_mc.parallel.state import destroy, init_distributed

    start = time.perf_counter()
    init_distributed(cfg)
    results = []
    try:
        for n, (given, resolved) in enumerate(checkpoints, 1):
            print(f"eval [{n}/{len(checkpoints)}] {resolved}", file=sys.stderr, flush=True)
            model = load_model_for_inference(cfg, resolved)
            t0 = time.perf_counter()
            figures = evaluate_model(model, tokenizer, cfg, source, records, mc, args.batch_size,
                                     args.max_new_tokens, label=f"[{n}] ", lm_eval=lm_eval)
            results.append({"checkpoint": given, "resolved": resolved, "seconds": time.perf_counter() - t0,
                            **figures})
            del model
            gc.collect()
    finally:
        destroy()
    seconds = time.perf_counter() - start
    print(comparison_table(results), flush=True)
    if args.out:
        write_report(args.out, {"config": args.config, "overrides": list(args.overrides),
                                "model": {"name": cfg.model.name, "seq_length": cfg.model.seq_length,
                                          "precision": cfg.model.precision, "tokenizer": cfg.data.tokenizer},
                                "settings": {"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                                             "tasks": args.tasks, "limit": args.limit,
                                             "max_documents": args.max_documents, "lm_eval": args.lm_eval,
                                             "lm_eval_limit": args.lm_eval_limit,
                                             "lm_eval_fewshot": args.lm_eval_fewshot},
                                "checkpoints": results, "seconds": seconds})
    print(summary_line(results, seconds) + (f"; report {args.out}" if args.out else ""), file=sys.stderr, flush=True)
    return 0

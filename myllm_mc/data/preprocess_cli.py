"""`myllm preprocess` / `tools/preprocess_data.py`: corpora → megatron-core .bin/.idx, flags as in Megatron-LM.

MPI mode (`mpirun -np N python tools/preprocess_data.py --mpi ...`): rank r takes the r-th contiguous block of
the input files and writes its own shard; rank 0 then merges the shards in rank order, which is exactly the
single-process output because the blocks keep file order.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Sequence

from myllm_mc.config import load
from myllm_mc.errors import describe_os_error, fail
from myllm_mc.locking import LockHeld

from .index_file import tokenizer_record_path
from .indexed_output import pair_paths, smallest_dtype
from .merge import merge_datasets
from .preprocess import Interrupted, make_pool, output_keys, output_prefix_for, preprocess
from .readers import FORMATS_HELP, InputError, SkipLog, expand_inputs
from .tokenizer import Tokenizer, TokenizerError


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Tokenize corpora into megatron-core indexed "
                                     "datasets (<output-prefix>_<key>_document.bin/.idx).")
    parser.add_argument("--input", nargs="+", required=True, help=f"files, globs or directories: {FORMATS_HELP}")
    parser.add_argument("--output-prefix", required=True, help="e.g. runs/data/corpus → "
                        "runs/data/corpus_text_document.{bin,idx}")
    parser.add_argument("--tokenizer", "--tokenizer-model", dest="tokenizer", default=None,
                        help="path to tokenizer.json (default: data.tokenizer of --config)")
    parser.add_argument("--tokenizer-type", default="HuggingFaceTokenizer", choices=["HuggingFaceTokenizer"],
                        help="accepted for Megatron-LM familiarity; tokenizer.json is always read with HF tokenizers")
    parser.add_argument("--config", default=None, help="YAML config to take data.tokenizer from")
    parser.add_argument("--json-keys", nargs="+", default=None, help="keys to tokenize; one dataset each "
                        "(default text; with --chat: the one key holding the messages, default messages)")
    parser.add_argument("--chat", action="store_true", help="records are conversations {\"messages\": [{\"role\", "
                        "\"content\"}, ...]}: render each with the ChatML template and write "
                        "<prefix>_text_document and <prefix>_loss_mask_document (1 on assistant replies)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)), help="tokenizing processes "
                        "(0: tokenize in the main process)")
    parser.add_argument("--append-eod", action=argparse.BooleanOptionalAction, default=True,
                        help="append <|endoftext|> to every document (default on; --no-append-eod turns it off)")
    parser.add_argument("--strict", action="store_true", help="stop with an error at the first bad record "
                        "instead of counting and skipping it")
    parser.add_argument("--mpi", action="store_true", help="split the input files over the MPI ranks (mpi4py), "
                        "then merge the shards on rank 0")
    parser.add_argument("--keep-shards", action="store_true", help="MPI mode: keep the per-rank shards")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no live progress bar")
    return parser


def _tokenizer_path(args, prog: str) -> str:
    path = args.tokenizer
    if path is None and args.config:
        path = load(args.config, [], None).data.tokenizer
    if path is None:
        raise InputError("no tokenizer given — fix: pass --tokenizer path/to/tokenizer.json (train one with "
                         "tools/train_tokenizer.py)")
    return str(Tokenizer(path).path)   # fails here, before any work, if unusable


def contiguous_share(files: Sequence[Path], rank: int, size: int) -> List[Path]:
    """Rank r's block of files: blocks in rank order concatenate back to the original order."""
    base, extra = divmod(len(files), size)
    start = rank * base + min(rank, extra)
    return list(files[start:start + base + (rank < extra)])


def run(argv, prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.json_keys is None:
            args.json_keys = ["messages"] if args.chat else ["text"]
        elif args.chat and len(args.json_keys) != 1:
            raise InputError(f"--chat takes one --json-keys (the key holding the messages), got "
                             f"{' '.join(args.json_keys)} — fix: pass one key or none (default messages)")
        files = expand_inputs(args.input)
        tokenizer = _tokenizer_path(args, prog)
        if args.workers < 0:
            raise InputError(f"--workers {args.workers} — fix: use 0 or more")
        if args.mpi:
            return _run_mpi(args, files, tokenizer, prog)
        result = preprocess(files, args.output_prefix, tokenizer, args.json_keys, args.workers, args.append_eod,
                            args.strict, args.progress, chat=args.chat)
    except (InputError, TokenizerError, LockHeld) as err:
        return fail(prog, str(err), 2, err)
    except OSError as err:                      # a full or read-only output directory
        return fail(prog, describe_os_error(err, where=args.output_prefix) + "; nothing was written, any previous dataset is intact", 1, err)
    except KeyboardInterrupt as err:
        return fail(prog, "interrupted — no output written, any previous dataset is intact", 130, err)
    except Interrupted as err:
        return fail(prog, f"{err} — no output written, any previous dataset is intact", 128 + err.signum, err)
    print(result.summary())
    return 0


def _run_mpi(args, files: List[Path], tokenizer: str, prog: str) -> int:
    dtype = smallest_dtype(Tokenizer(tokenizer).vocab_size)
    pool = (make_pool(tokenizer, args.json_keys, args.append_eod, dtype, args.workers, args.chat)
            if args.workers > 0 else None)
    from mpi4py import MPI  # after the fork: MPI must not be initialised in a process that forks

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    shard_prefix = f"{args.output_prefix}.shard{rank:05d}-of-{size:05d}"
    mine = contiguous_share(files, rank, size)
    error = result = None
    try:
        result = preprocess(mine, shard_prefix, tokenizer, args.json_keys, args.workers, args.append_eod,
                            args.strict, args.progress and rank == 0, pool=pool, chat=args.chat)
    except (InputError, Exception) as err:   # every rank must reach the gather, or rank 0 waits forever
        error = f"rank {rank}: {err}"
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    reports = comm.gather((error, result), root=0)
    status = 0
    if rank == 0:
        errors = [e for e, _ in reports if e]
        if errors:
            print(f"{prog}: {errors[0]}", file=sys.stderr)
            status = 2
        else:
            status = _merge_shards(args, [r for _, r in reports], size, prog)
    status = comm.bcast(status, root=0)
    return status


def _merge_shards(args, results, size: int, prog: str) -> int:
    skips = SkipLog()
    for r in results:
        skips.merge(r.skips.counts, r.skips.examples)
    outputs = []
    for key in output_keys(args.json_keys, args.chat):
        shards = [output_prefix_for(f"{args.output_prefix}.shard{rank:05d}-of-{size:05d}", key)
                  for rank in range(size)]
        outputs.append(merge_datasets(shards, output_prefix_for(args.output_prefix, key)).prefix)
        if not args.keep_shards:
            for shard in shards:
                for path in pair_paths(shard):
                    os.remove(path)
                Path(tokenizer_record_path(shard)).unlink(missing_ok=True)
    documents = sum(r.documents for r in results)
    tokens = sum(r.tokens for r in results)
    seconds = max(r.seconds for r in results)
    print(f"preprocess (MPI, {size} ranks × {max(args.workers, 1)} workers): {documents:,} documents, "
          f"{tokens:,} tokens in {seconds:.1f} s — {documents / max(seconds, 1e-9):,.0f} docs/s, "
          f"{tokens / max(seconds, 1e-9):,.0f} tokens/s; {skips.describe()}; wrote "
          f"{', '.join(p + '.{bin,idx}' for p in outputs)}")
    return 0


def main(argv=None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv), "myllm preprocess")

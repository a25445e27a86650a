"""Tokenize corpora into megatron-core indexed datasets, on many worker processes, deterministically.

How: the main process cuts files into raw batches (lines, rows or tar samples); a pool of workers parses,
validates and tokenizes each batch with one `encode_batch` call and returns flat token arrays; the main process
appends them in input order (ordered imap), so the output is byte-identical for any --workers. Each worker runs
its tokenizer single-threaded: --workers N means N cores.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from myllm_mc.locking import RunLock

from .chat import CHAT_OUTPUT_KEYS, CHAT_REASONS, parse_conversation
from .indexed_output import AtomicIndexedWriter, smallest_dtype
from .progress import Throughput
from .readers import BadRecord, InputError, RawBatch, SkipLog, parse_record, raw_batches
from .tokenizer import Tokenizer, replace_lone_surrogates


def output_prefix_for(output_prefix: str, key: str) -> str:
    """Megatron-LM's naming: one dataset per JSON key, `<prefix>_<key>_document`."""
    return f"{output_prefix}_{key}_document"


@dataclass
class EncodedBatch:
    tokens: Dict[str, np.ndarray]
    lengths: Dict[str, np.ndarray]
    documents: int
    nbytes: int
    bad: List[tuple] = field(default_factory=list)      # (reason, file:number)
    surrogates_replaced: int = 0                        # documents whose lone surrogates became U+FFFD
    learned_tokens: int = 0                             # chat mode: tokens with loss mask 1


# --- worker side --------------------------------------------------------------------------------------------
_WORKER: dict = {}


def _init_worker(tokenizer_path: str, keys: Sequence[str], append_eod: bool, dtype, chat: bool = False) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"      # one core per worker; --workers sets the parallelism
    signal.signal(signal.SIGINT, signal.SIG_IGN)         # the main process handles Ctrl-C and cleans up
    _WORKER.update(tokenizer=Tokenizer(tokenizer_path), keys=list(keys), append_eod=append_eod, dtype=dtype,
                   chat=chat)


def encode_raw_batch(batch: RawBatch) -> EncodedBatch:
    """Parse, validate and tokenize one batch (runs in a worker)."""
    tok: Tokenizer = _WORKER["tokenizer"]
    if _WORKER["chat"]:
        return encode_chat_batch(batch, tok, _WORKER["keys"][0], _WORKER["append_eod"], _WORKER["dtype"])
    keys, dtype = _WORKER["keys"], _WORKER["dtype"]
    per_key: Dict[str, List[str]] = {k: [] for k in keys}
    bad, surrogates = [], 0
    for number, payload in zip(batch.numbers, batch.payloads):
        try:
            texts = parse_record(batch.kind, payload, keys)
        except BadRecord as record:
            bad.append((record.reason, f"{batch.file}:{number}"))
            continue
        for key, text in zip(keys, texts):
            fixed, replaced = replace_lone_surrogates(text)
            surrogates += bool(replaced)
            per_key[key].append(fixed)
    tokens, lengths = {}, {}
    for key in keys:
        ids = tok.encode_batch(per_key[key])
        if _WORKER["append_eod"]:
            for doc in ids:
                doc.append(tok.eod)
        lengths[key] = np.fromiter((len(d) for d in ids), dtype=np.int64, count=len(ids))
        tokens[key] = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths[key].sum()))
    documents = len(per_key[keys[0]]) if keys else 0
    return EncodedBatch(tokens, lengths, documents, batch.nbytes, bad, surrogates)


def encode_chat_batch(batch, tokenizer: Tokenizer, key: str, append_eod: bool, dtype):
    """Parse, validate and render one raw batch of conversations (runs in a preprocessing worker)."""
    conversations, bad, surrogates = [], [], 0
    for number, payload in zip(batch.numbers, batch.payloads):
        try:
            messages = parse_conversation(batch.kind, payload, key)
        except BadRecord as record:
            bad.append((record.reason, f"{batch.file}:{number}"))
            continue
        replaced = 0
        for message in messages:
            message["content"], n = replace_lone_surrogates(message["content"])
            replaced += n
        surrogates += bool(replaced)
        conversations.append(messages)
    ids_list, masks = [], []
    for ids, mask in tokenizer.encode_chat_batch(conversations):
        if append_eod:
            ids, mask = ids + [tokenizer.eod], mask + [0]
        ids_list.append(ids)
        masks.append(mask)
    lengths = np.fromiter((len(d) for d in ids_list), dtype=np.int64, count=len(ids_list))
    total = int(lengths.sum())
    tokens = {"text": np.fromiter(itertools.chain.from_iterable(ids_list), dtype=dtype, count=total),
              "loss_mask": np.fromiter(itertools.chain.from_iterable(masks), dtype=np.uint8, count=total)}
    return EncodedBatch(tokens, {"text": lengths, "loss_mask": lengths}, len(ids_list), batch.nbytes, bad,
                        surrogates, int(tokens["loss_mask"].sum()))


# --- main side ----------------------------------------------------------------------------------------------
@dataclass
class PreprocessResult:
    outputs: List[str]
    documents: int
    tokens: int
    nbytes: int
    seconds: float
    skips: SkipLog
    surrogates_replaced: int
    dtype: str
    workers: int
    learned_tokens: int | None = None        # chat mode: tokens with loss mask 1

    def summary(self) -> str:
        seconds = max(self.seconds, 1e-9)
        surrogate = (f"; {self.surrogates_replaced:,} documents had lone surrogates replaced by U+FFFD"
                     if self.surrogates_replaced else "")
        learned = ("" if self.learned_tokens is None else f" of which {self.learned_tokens:,} "
                   f"({self.learned_tokens / max(self.tokens, 1):.1%}) carry loss")
        what = "conversations" if self.learned_tokens is not None else "documents"
        return (f"preprocess: {self.documents:,} {what}, {self.tokens:,} tokens ({self.dtype}){learned}, "
                f"{self.nbytes / 1e6:,.1f} MB in {self.seconds:.1f} s — {self.documents / seconds:,.0f} docs/s, "
                f"{self.tokens / seconds:,.0f} tokens/s on {self.workers} workers; {self.skips.describe()}{surrogate}; "
                f"wrote {', '.join(p + '.{bin,idx}' for p in self.outputs)}")


class Interrupted(Exception):
    """SIGTERM during preprocessing: temporaries removed, any previous dataset on the prefix left as it was."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def no_documents_error(files: Sequence[Path], keys: Sequence[str], skips: SkipLog, records: int) -> InputError:
    """Zero usable documents is never a dataset: say what was found instead."""
    names = ", ".join(str(f) for f in files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
    if not records:
        found = "no records at all (empty or blank files)"
    else:
        found = f"{records:,} records, none usable: {skips.describe()}"
    hint = (f"the records lack --json-keys {' '.join(keys)}: pass the key that holds the text"
            if skips.counts.get("missing_key") else "check that these are the files you meant")
    return InputError(f"no usable documents in {names}: {found} — fix: {hint}")


def preprocess(files: Sequence[Path], output_prefix: str, tokenizer_path: str, keys: Sequence[str] = ("text",),
               workers: int = 1, append_eod: bool = True, strict: bool = False, progress: bool = True,
               batch_records: int = 1024, pool=None, chat: bool = False) -> PreprocessResult:
    """Tokenize `files` (in order) into `<output_prefix>_<key>_document.{bin,idx}`; returns counts and throughput.

    workers=0 tokenizes in this process (no pool). `pool` may be a pool made earlier by `make_pool` (MPI mode
    forks it before MPI starts). chat=True: `keys` is the one key holding each record's messages; writes
    `<output_prefix>_text_document` and `<output_prefix>_loss_mask_document` (myllm_mc.data.chat).
    """
    tokenizer = Tokenizer(tokenizer_path)
    dtype = smallest_dtype(tokenizer.vocab_size)
    outputs_keys = output_keys(keys, chat)
    lock = RunLock(f"{output_prefix}.lock", f"output prefix {output_prefix}").acquire()   # one writer per prefix
    own_pool = pool is None and workers > 0
    if own_pool:
        pool = make_pool(tokenizer_path, keys, append_eod, dtype, workers, chat)
    elif workers == 0:
        _init_worker(str(tokenizer.path), keys, append_eod, dtype, chat)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupted)
    writers = {}
    skips = SkipLog()
    if chat:                       # chat reasons print after the readers' ones, in a fixed order
        skips.counts.update({reason: 0 for reason in CHAT_REASONS})
    surrogates = records = 0
    in_flight = threading.Semaphore(4 * max(workers, 1) + 2)   # back-pressure: never read far ahead
    stop_reading = threading.Event()
    try:
        # The writers import megatron-core (and so torch) here, in this thread, after the pool forked and before
        # the pool's feeder thread starts reading: a reader importing webdataset (→ torch) while this thread
        # imports megatron-core (→ torch) left torch half-initialised ("cannot import name 'set_module' from
        # partially initialized module 'torch.utils'") on .tar inputs.
        writers = {k: AtomicIndexedWriter(output_prefix_for(output_prefix, k), np.uint8 if chat and k == "loss_mask"
                                          else dtype, tokenizer.unique_identifiers) for k in outputs_keys}
        batches = _bounded((b for path in files for b in raw_batches(Path(path), keys, max_records=batch_records)),
                           in_flight, stop_reading)
        with Throughput("preprocess", progress) as meter:
            results = pool.imap(encode_raw_batch, batches, chunksize=1) if pool else map(encode_raw_batch, batches)
            learned = 0
            for result in results:
                in_flight.release()
                for reason, where in result.bad:
                    skips.add(reason, where)
                if strict and result.bad:
                    raise skips.strict_error()
                for key in outputs_keys:
                    writers[key].add_documents(result.tokens[key], result.lengths[key])
                surrogates += result.surrogates_replaced
                learned += result.learned_tokens
                records += result.documents + len(result.bad)
                counted = outputs_keys[:1] if chat else outputs_keys      # the mask is not more tokens
                meter.update(result.documents, sum(int(result.lengths[k].sum()) for k in counted), result.nbytes)
            if not meter.documents:
                raise no_documents_error(list(files), keys, skips, records)
            outputs = [writers[k].commit() for k in outputs_keys]
        return PreprocessResult(outputs, meter.documents, meter.tokens, meter.bytes, meter.elapsed, skips,
                                surrogates, np.dtype(dtype).name, max(workers, 1), learned if chat else None)
    except BaseException:
        stop_reading.set()                 # unblock the pool's feeder thread so terminate() can join it
        for _ in range(4 * max(workers, 1) + 2):
            in_flight.release()
        for writer in writers.values():
            writer.abort()
        if own_pool:
            pool.terminate()
            own_pool = False
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if own_pool:
            pool.close()
            pool.join()
        lock.release()


def _bounded(batches, semaphore, stop):
    """Yield each batch only once a slot is free; the consumer releases a slot per result it has written."""
    for batch in batches:
        semaphore.acquire()
        if stop.is_set():
            return
        yield batch


def output_keys(keys: Sequence[str], chat: bool = False) -> tuple:
    """The datasets a run writes: one per key, or tokens + loss mask for chat."""
    if chat:
        return CHAT_OUTPUT_KEYS
    return tuple(keys)


def make_pool(tokenizer_path: str, keys: Sequence[str], append_eod: bool, dtype, workers: int, chat: bool = False):
    """Worker processes (fork: no re-import; made before megatron-core or MPI start any threads)."""
    context = multiprocessing.get_context("fork")
    return context.Pool(workers, initializer=_init_worker, initargs=(str(tokenizer_path), list(keys), append_eod,
                                                                     dtype, chat))

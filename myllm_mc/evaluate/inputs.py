"""Every eval input read and checked before a model loads: the text to score, the tasks to run.

A bad path, an empty text or an unknown task name raises EvalError with one line naming the fix; the CLI prints
it and exits 2 before any checkpoint is read.

Which tokens and bytes perplexity covers (docs/evaluation.md): documents are tokenized as preprocessing does,
each followed by the tokenizer's end-of-document id, and the stream starts with one more end-of-document id as
the context of the first token. So every token of every document, and every document's end marker, is predicted
exactly once; the byte count is the UTF-8 length of the documents' text (end markers count 0 bytes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from myllm_mc.data.datasets import parse_blend
from myllm_mc.data.readers import InputError
from myllm_mc.data.tokenizer import replace_lone_surrogates
from myllm_mc.errors import MyllmError
from myllm_mc.jsonl import MalformedJsonl, read_jsonl
from myllm_mc.tasks import TASKS_DIR, load_records, task_files


class EvalError(MyllmError, ValueError):
    """An eval input problem, as one line with its fix."""


@dataclass
class TextSource:
    """A token stream ready for `score_stream` and what it covers."""

    name: str                 # what was scored, for the report ("text:FILE", "data:PREFIX", "valid:PREFIX,...")
    stream: List[int]
    nbytes: int
    documents: int


def read_text_documents(path: str, max_documents: Optional[int] = None) -> List[str]:
    """A .txt file (one document: the whole file) or a .jsonl file ({"text": ...} per line)."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"text file {path!r} not found — fix: pass a .txt file or a .jsonl file with one"
                        ' {"text": "..."} per line')
    if p.suffix not in (".txt", ".jsonl"):
        raise EvalError(f"{path}: unknown kind {p.suffix!r} — fix: pass a .txt or .jsonl file (or --data PREFIX"
                        " for preprocessed .bin/.idx)")
    if p.suffix == ".txt":
        raw = p.read_text(encoding="utf-8", errors="replace")
        docs = [raw] if raw.strip() else []
    else:
        docs = []
        try:
            for n, record in read_jsonl(path, errors="replace"):
                if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                    raise EvalError(f'{path}:{n}: needs a string "text" — fix: e.g. {{"text": "Once upon a time"}}')
                if record["text"]:
                    docs.append(record["text"])
                if max_documents and len(docs) >= max_documents:
                    break
        except MalformedJsonl as err:
            raise EvalError(str(err)) from None
    if not docs:
        raise EvalError(f"{path}: no text to score — fix: pass a file with at least one non-empty document")
    return docs[:max_documents] if max_documents else docs


def text_source(path: str, tokenizer, max_documents: Optional[int] = None) -> TextSource:
    docs = [replace_lone_surrogates(d)[0] for d in read_text_documents(path, max_documents)]
    stream = [tokenizer.eod]
    for ids in tokenizer.encode_batch(docs):
        stream += ids + [tokenizer.eod]
    return TextSource(f"text:{path}", stream, sum(len(d.encode("utf-8")) for d in docs), len(docs))


def _indexed(prefix: str, tokenizer=None):
    # megatron-core on use: `myllm eval` checks its inputs before it loads (see infer/generator.py)
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from myllm_mc.data.index_file import tokenizer_problem

    prefix = prefix.removesuffix(".bin").removesuffix(".idx")
    missing = [f"{prefix}{ext}" for ext in (".bin", ".idx") if not os.path.isfile(f"{prefix}{ext}")]
    if missing:
        raise EvalError(f"{' and '.join(missing)} not found — fix: pass the --output-prefix of"
                        " tools/preprocess_data.py"
                        " plus _text_document (e.g. runs/data/corpus_text_document)")
    problem = tokenizer_problem(prefix, tokenizer) if tokenizer is not None else None
    if problem:                    # its ids mean other strings: a perplexity of another text
        raise EvalError(problem)
    return prefix, IndexedDataset(prefix)


def _stream_of(datasets_and_ranges, tokenizer, name: str, max_documents: Optional[int]) -> TextSource:
    """Documents as preprocessed (each already ends with eod when --append-eod was on); bytes by detokenizing
    each document without its special tokens."""
    stream, nbytes, documents = [tokenizer.eod], 0, 0
    for dataset, first, end in datasets_and_ranges:
        for i in range(first, end):
            if max_documents and documents >= max_documents:
                break
            ids = [int(t) for t in dataset[i]]
            stream += ids
            nbytes += len(tokenizer.decode(ids, skip_special_tokens=True).encode("utf-8"))
            documents += 1
    if len(stream) < 2:
        raise EvalError(f"{name}: no tokens to score — fix: pass a dataset with at least one non-empty document")
    return TextSource(name, stream, nbytes, documents)


def data_source(prefix: str, tokenizer, max_documents: Optional[int] = None) -> TextSource:
    prefix, dataset = _indexed(prefix, tokenizer)
    return _stream_of([(dataset, 0, len(dataset))], tokenizer, f"data:{prefix}", max_documents)


def valid_source(cfg, tokenizer, max_documents: Optional[int] = None) -> TextSource:
    """The validation documents of every data.blend prefix, split by document as megatron-core's
    BlendedMegatronDatasetBuilder does (data.split), unweighted and unshuffled."""
    from megatron.core.datasets.blended_megatron_dataset_config import parse_and_normalize_split

    try:
        prefixes, _ = parse_blend(cfg.data.blend)
    except InputError as err:
        raise EvalError(str(err)) from None
    weights = parse_and_normalize_split(cfg.data.split)
    if weights[1] <= 0:
        raise EvalError(f"data.split {cfg.data.split} has no validation part — fix: --set data.split=949,50,1, or"
                        " pass --text FILE / --data PREFIX")
    bookends = np.cumsum([0.0] + list(weights))
    ranges = []
    for prefix in prefixes:
        _, dataset = _indexed(prefix, tokenizer)
        n = len(dataset)
        ranges.append((dataset, int(round(bookends[1] * n)), int(round(bookends[2] * n))))
    return _stream_of(ranges, tokenizer, f"valid:{','.join(prefixes)}", max_documents)


def available_tasks() -> List[str]:
    return sorted(p.name.removesuffix(".test.jsonl") for p in (TASKS_DIR / "prompts").glob("*.test.jsonl"))


def task_records(names: str, limit: Optional[int] = None) -> List[dict]:
    """The test prompts of the named tasks ("all" or "a,b"), the first `limit` of each."""
    known = available_tasks()
    wanted = known if names.strip() == "all" else [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        named = ", ".join(unknown) if unknown else repr(names)
        raise EvalError(f"unknown task {named} — fix: --tasks all or a comma list of "
                        f"{', '.join(known) or '(none shipped: run python tools/build_tasks.py)'}")
    if limit is not None and limit < 1:
        raise EvalError(f"--limit {limit}: must be at least 1 — fix: e.g. --limit 50")
    records = []
    for name in wanted:
        records += load_records(task_files("prompts", "test", [name]))[:limit]
    return records


def checked_paths(paths: Sequence[str], what: str) -> None:
    for path in paths:
        if not Path(path).exists():
            raise EvalError(f"{what} {path!r} does not exist — fix: check the path")

"""Reading documents from JSONL (plain, .gz, .zst), Parquet and webdataset tar shards, bad records counted.

Why split reading from parsing: the reader only cuts files into raw records (cheap, in the main process); parsing
and validation happen in the worker that also tokenizes them, so they scale with --workers. A record that cannot
give text is counted under one reason and skipped — never fatal unless the caller asks for strictness.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Sequence, Tuple

from myllm_mc.errors import MyllmError

# why a record was skipped, in the order the summary prints them
MALFORMED_JSON = "malformed_json"
NON_UTF8 = "non_utf8"
MISSING_KEY = "missing_key"
NOT_TEXT = "not_text"
EMPTY = "empty"
REASONS = (MALFORMED_JSON, NON_UTF8, MISSING_KEY, NOT_TEXT, EMPTY)

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
COMPRESSIONS = ("", ".gz", ".zst")
FORMATS_HELP = "JSONL (.jsonl/.json, optionally .gz or .zst), Parquet (.parquet) or webdataset shards (.tar)"


# one document this large takes ~100× its size in memory to tokenize (measured: 50 MB → 5.2 GB)
HUGE_DOCUMENT_BYTES = int(os.environ.get("MYLLM_HUGE_DOCUMENT_BYTES", 16 << 20))
TOKENIZE_MEMORY_FACTOR = 100


def warn_huge_document(where: str, size: int) -> None:
    print(f"warning: {where} is a single {size / 1e6:,.1f} MB document: tokenizing it takes about "
          f"{size * TOKENIZE_MEMORY_FACTOR / 1e9:,.1f} GB of memory (per worker) — fix: split such documents "
          f"into smaller ones", file=sys.stderr, flush=True)


class InputError(MyllmError, ValueError):
    """Unusable input (missing, unreadable, unknown format, or bad records under --strict); one line with the fix."""


class BadRecord(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def input_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".tar"):
        return "webdataset"
    if any(name.endswith(s + c) for s in JSONL_SUFFIXES for c in COMPRESSIONS):
        return "jsonl"
    raise InputError(f"{path}: unknown input format — fix: give {FORMATS_HELP}")


def expand_inputs(patterns: Sequence[str]) -> List[Path]:
    """Files named by paths, globs or directories, in a stable order, all checked before any work starts."""
    files: List[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise InputError(f"--input {pattern}: the pattern matches no file — fix: check the path")
            files += [Path(m) for m in matches if Path(m).is_file()]
        elif Path(pattern).is_dir():
            found = sorted(p for p in Path(pattern).rglob("*") if p.is_file() and _is_data_file(p))
            if not found:
                raise InputError(f"--input {pattern}: the directory holds no {FORMATS_HELP} — fix: check the path")
            files += found
        else:
            files.append(Path(pattern))
    if not files:
        raise InputError("no input files given — fix: pass --input FILE_OR_GLOB ...")
    for path in files:
        if not path.exists():
            raise InputError(f"{path}: no such input file — fix: check the path or glob")
        if not os.access(path, os.R_OK) or not path.is_file():
            raise InputError(f"{path}: cannot be read — fix: check its permissions")
        input_kind(path)
    return files


def _is_data_file(path: Path) -> bool:
    try:
        input_kind(path)
        return True
    except InputError:
        return False


# --- raw records --------------------------------------------------------------------------------------------
@dataclass
class RawBatch:
    """Consecutive raw records of one file; `numbers` are 1-based line (JSONL/Parquet) or sample numbers."""
    file: str
    kind: str
    numbers: List[int] = field(default_factory=list)
    payloads: list = field(default_factory=list)
    nbytes: int = 0


class _CheckedZstd(io.RawIOBase):
    """A .zst stream that raises at its end unless the last frame was complete.

    Why: zstandard's stream_reader returns a short stream, not an error, when the file is truncated — a cut
    download would become a short dataset that looks complete.
    """

    def __init__(self, path: Path):
        import zstandard  # the format modules are the [data] extra's, imported for the inputs that need them
        self._zstd = zstandard
        self._raw = open(path, "rb")
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._frame_open = False       # a frame has started and not ended
        self.consumed = 0              # compressed bytes read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if self._frame_open:
                    raise TruncatedStream(f"the zstd stream ends inside a frame after {self.consumed:,} compressed "
                                          f"bytes")
                return 0
            self.consumed += len(chunk)
            while chunk:
                self._frame_open = True
                try:
                    out = self._dobj.decompress(chunk)
                except self._zstd.ZstdError as err:
                    raise TruncatedStream(f"corrupt zstd data near compressed byte {self.consumed:,} ({err})") from None
                self._pending += out
                if self._dobj.eof:                  # frame complete; the rest belongs to the next frame
                    self._frame_open = False
                    chunk = self._dobj.unused_data
                    self._dobj = self._zstd.ZstdDecompressor().decompressobj()
                else:
                    chunk = b""
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


class TruncatedStream(Exception):
    """A compressed input that ends early or is corrupt."""


def _open_binary(path: Path):
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_CheckedZstd(path), buffer_size=1 << 20)
    return open(path, "rb", buffering=1 << 20)


def _raw_records(path: Path, keys: Sequence[str]) -> Iterator[Tuple[int, object, int]]:
    """(number, payload, size in bytes) for every record of one file, unparsed.

    A damaged file (truncated or corrupt compression, unreadable Parquet or tar) raises InputError naming the
    file and the last good record: never a silently short dataset.
    """
    kind = input_kind(path)
    number = 0
    try:
        if kind == "jsonl":
            with _open_binary(path) as f:
                warned = False
                for number, line in enumerate(f, 1):
                    if len(line) > HUGE_DOCUMENT_BYTES and not warned:
                        warn_huge_document(f"{path}:{number}", len(line))
                        warned = True           # once per file: the cause is the same
                    if line.strip():            # blank lines hold no document
                        yield number, line, len(line)
        elif kind == "parquet":
            import pyarrow.parquet as pq
            pf = pq.ParquetFile(path)
            columns_found = pf.schema_arrow.names
            present = [k for k in keys if k in columns_found]
            if not present:
                raise InputError(f"{path}: no column {', '.join(map(repr, keys))} (columns: "
                                 f"{', '.join(columns_found) or 'none'}) — fix: --json-keys COLUMN")
            for batch in pf.iter_batches(batch_size=4096, columns=present):
                columns = {k: batch.column(k).to_pylist() for k in present}
                for row in range(batch.num_rows):
                    number += 1
                    values = {k: columns[k][row] for k in present}
                    yield number, values, sum(len(v) for v in values.values() if isinstance(v, (str, bytes)))
        else:
            import webdataset as wds  # imports torch: only a .tar input pays for it
            _check_tar(path)        # webdataset stops quietly at a cut member: a short shard would look whole
            samples = wds.WebDataset(str(path), shardshuffle=False, empty_check=False)
            for number, sample in enumerate(samples, 1):
                members = {k: v for k, v in sample.items() if not k.startswith("__")}
                yield number, members, sum(len(v) for v in members.values() if isinstance(v, bytes))
    except InputError:
        raise
    except Exception as err:            # zstd/gzip/zlib/pyarrow/tarfile each raise their own kind
        unit = "line" if kind == "jsonl" else ("row" if kind == "parquet" else "sample")
        where = f"after {unit} {number:,}" if number else "before the first record"
        raise InputError(f"{path}: damaged input {where}: {_one_line(err)} — fix: re-download or re-create "
                         f"this file (nothing was written)") from err


def _check_tar(path: Path) -> None:
    """TruncatedStream if a member's data runs past the end of the file, or the end-of-archive block is missing
    (a cut between members reads as a clean end otherwise). Headers only: seeks, no data read."""
    size = path.stat().st_size
    last = "the first member"
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.offset_data + member.size > size:
                raise TruncatedStream(f"the tar archive is truncated inside member {member.name} "
                                      f"({size:,} bytes, that member ends at {member.offset_data + member.size:,})")
            last = member.name
        end = tar.offset
    with open(path, "rb") as f:
        f.seek(end)
        block = f.read(512)
    if len(block) < 512 or block.count(0) != 512:
        raise TruncatedStream(f"the tar archive is truncated after member {last} (no end-of-archive block)")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    message = text[0] if text else type(err).__name__
    if isinstance(err, EOFError) or "end-of-stream" in message:
        return f"the compressed stream is truncated ({message})"
    return message[:200]


def raw_batches(path: Path, keys: Sequence[str], max_records: int = 1024, max_bytes: int = 1 << 20
                ) -> Iterator[RawBatch]:
    """One file cut into batches small enough to spread over workers, large enough to amortise the hand-off."""
    kind = input_kind(path)
    batch = RawBatch(str(path), kind)
    for number, payload, size in _raw_records(path, keys):
        batch.numbers.append(number)
        batch.payloads.append(payload)
        batch.nbytes += size
        if len(batch.numbers) >= max_records or batch.nbytes >= max_bytes:
            yield batch
            batch = RawBatch(str(path), kind)
    if batch.numbers:
        yield batch


# --- parsing ------------------------------------------------------------------------------------------------
def _text(value) -> str:
    if value is None:
        raise BadRecord(MISSING_KEY)
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(NON_UTF8) from None
    if not isinstance(value, str):
        raise BadRecord(NOT_TEXT)
    if not value.strip():
        raise BadRecord(EMPTY)
    return value


def parse_record(kind: str, payload, keys: Sequence[str]) -> List[str]:
    """The texts of `keys` in one raw record, or BadRecord(reason)."""
    if kind == "jsonl":
        try:
            line = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRecord(NON_UTF8) from None
        try:
            obj = json.loads(line)
        except ValueError:
            raise BadRecord(MALFORMED_JSON) from None
        if not isinstance(obj, dict):
            raise BadRecord(MALFORMED_JSON)
        return [_text(obj.get(k)) for k in keys]
    if kind == "parquet":
        return [_text(payload.get(k)) for k in keys]
    # webdataset sample: member "<key>" (e.g. 000001.text), "txt" for the key text, or a "json" member
    parsed = None
    texts = []
    for k in keys:
        if k in payload:
            texts.append(_text(payload[k]))
        elif k == "text" and "txt" in payload:
            texts.append(_text(payload["txt"]))
        elif "json" in payload:
            if parsed is None:
                try:
                    parsed = json.loads(payload["json"].decode("utf-8"))
                except UnicodeDecodeError:
                    raise BadRecord(NON_UTF8) from None
                except ValueError:
                    raise BadRecord(MALFORMED_JSON) from None
            if not isinstance(parsed, dict):
                raise BadRecord(MALFORMED_JSON)
            texts.append(_text(parsed.get(k)))
        else:
            raise BadRecord(MISSING_KEY)
    return texts


# --- accounting ---------------------------------------------------------------------------------------------
class SkipLog:
    """Skipped records per reason, with the first few file:line locations of each, for the closing summary."""

    def __init__(self, keep: int = 3):
        self.keep = keep
        self.counts = {r: 0 for r in REASONS}
        self.examples: List[str] = []

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.examples) < self.keep:
            self.examples.append(f"{where} ({reason})")

    def merge(self, other_counts: dict, other_examples: Sequence[str]) -> None:
        for reason, n in other_counts.items():
            self.counts[reason] = self.counts.get(reason, 0) + n
        self.examples += list(other_examples)[: max(0, self.keep - len(self.examples))]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        if not self.total:
            return "skipped 0"
        parts = ", ".join(f"{r} {n:,}" for r, n in self.counts.items() if n)
        return f"skipped {self.total:,} ({parts}); first at {', '.join(self.examples)}"

    def strict_error(self) -> InputError:
        return InputError(f"bad input under --strict: {self.describe()} — fix: repair those records or drop --strict "
                          f"to skip them")


def iter_documents(files: Sequence[Path], keys: Sequence[str] = ("text",), skips: SkipLog | None = None,
                   strict: bool = False) -> Iterator[Tuple[str, List[str]]]:
    """(file:number, texts) for every good record, in file order; bad ones go to `skips` (or raise if strict)."""
    skips = skips if skips is not None else SkipLog()
    for path in files:
        for number, payload, _ in _raw_records(path, keys):
            where = f"{path}:{number}"
            try:
                yield where, parse_record(input_kind(path), payload, keys)
            except BadRecord as bad:
                skips.add(bad.reason, where)
                if strict:
                    raise skips.strict_error() from None

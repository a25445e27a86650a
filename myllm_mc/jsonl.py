"""The one JSONL reader for small record files (prompts, eval texts, multiple-choice sets, task files, metrics).

Corpora for preprocessing are streamed by data/readers.py (bytes, compression, per-record skip reasons); this is
for files read whole by a command. Ground floor: every stage may import it, the planner included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union


class MalformedJsonl(ValueError):
    """A line that is not JSON; the message is one line: `FILE:N: not JSON (reason) — fix: ...`."""

    def __init__(self, path, line: int, reason: str):
        super().__init__(f"{path}:{line}: not JSON ({reason}) — fix: one JSON object per line")
        self.path, self.line, self.reason = str(path), line, reason


def read_jsonl(path: Union[str, Path], *, errors: str = "strict",
               on_malformed: Optional[Callable[[MalformedJsonl], None]] = None) -> Iterator[tuple[int, Any]]:
    """(line number from 1, record) for every non-blank line of `path`, lazily (stop early to read no further).

    A line that is not JSON raises MalformedJsonl, or with `on_malformed` is handed to it and skipped (callers that
    count bad lines). `errors` is how undecodable UTF-8 is treated ("strict" raises, "replace" keeps going)."""
    with open(path, encoding="utf-8", errors=errors) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                bad = MalformedJsonl(path, number, err.msg)
                if on_malformed is None:
                    raise bad from None
                on_malformed(bad)
                continue
            yield number, record

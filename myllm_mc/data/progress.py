"""A progress bar that shows documents/s and tokens/s, shared by preprocessing, stats and merging.

Why rich: one live line on stderr that degrades to nothing on a non-terminal (CI logs stay readable); the
closing one-line summary is printed by the caller on stdout.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


def _si(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value:.0f}"


class Throughput:
    """Counts documents, tokens and bytes; renders a live bar when enabled. Use as a context manager."""

    def __init__(self, description: str, enabled: bool = True, total_bytes: int | None = None):
        self.description = description
        self.enabled = enabled and sys.stderr.isatty()
        self.total_bytes = total_bytes
        self.documents = self.tokens = self.bytes = 0
        self.start = time.perf_counter()
        self._progress = self._task = None

    def __enter__(self) -> "Throughput":
        self.start = time.perf_counter()
        if self.enabled:
            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=self.total_bytes, stats="")
        return self

    def update(self, documents: int = 0, tokens: int = 0, nbytes: int = 0) -> None:
        self.documents += documents
        self.tokens += tokens
        self.bytes += nbytes
        if self._progress is not None:
            self._progress.update(self._task, completed=self.bytes, stats=self.rates())

    def rates(self) -> str:
        seconds = max(self.elapsed, 1e-9)
        return (f"{self.documents:,} docs {_si(self.documents / seconds)} docs/s · {_si(self.tokens)} tokens "
                f"{_si(self.tokens / seconds)} tokens/s · {self.bytes / 1e6:,.1f} MB")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

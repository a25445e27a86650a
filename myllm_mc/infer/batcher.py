"""Batching of concurrent requests: one thread owns the generator and decodes every admitted row together.

Why one thread: the model, its KV cache and torch's intra-op threads are one resource; HTTP handlers (asyncio)
only enqueue jobs and read their events, so a slow client never stalls a decode step and a decode step never
blocks the event loop. Requests that arrive while a batch is decoding join it between two decode steps when the
generator supports it (continuous batching), else they form the next batch.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

from .server_metrics import ServerMetrics


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: tuple = ()                     # stop strings (not part of the output)
    top_logprobs: Optional[int] = None   # None: no log-probs; 0: the sampled token's only; k: plus the k best


@dataclass
class TokenEvent:
    """New output of one row: the text it adds (may be "" while a UTF-8 character or a stop string is pending)."""
    text: str
    token_ids: List[int]
    logprobs: Optional[list] = None      # per token: (token_text, logprob, [(alt_text, alt_logprob), ...])


@dataclass
class FinishEvent:
    finish_reason: str                   # "stop" | "length" | "timeout" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    message: str = ""


@dataclass
class Job:
    """One row of generation and the channel its events go back through."""
    prompt_ids: List[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    deadline: float                      # time.monotonic() after which the row is stopped
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: Optional[float] = None

    def emit(self, event) -> None:      # called from the batcher thread
        if isinstance(event, TokenEvent) and self.first_token_at is None:
            self.first_token_at = time.monotonic()
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def cancel(self) -> None:
        self.cancelled.set()


class Batcher:
    """Owns a generator; `submit` queues jobs from any thread, the batcher thread decodes them in batches."""

    def __init__(self, engine, metrics: ServerMetrics, max_rows: int = 8, batch_wait_s: float = 0.005):
        self.engine = engine
        self.metrics = metrics
        self.max_rows = max_rows
        self.batch_wait_s = batch_wait_s
        self._pending: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="myllm-batcher", daemon=True)
        self.steps = 0                   # decode steps run (what the batching test reads)
        self.rows_decoded = 0            # sum over steps of the rows in each step

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._pending.put(None)
        self._thread.join(timeout)

    def submit(self, job: Job) -> Job:
        self._pending.put(job)
        self.metrics.set("myllm_queue_depth", self._pending.qsize())
        return job

    # --- the batcher thread ---------------------------------------------------------------------------
    def _take(self, block: bool, limit: int) -> List[Job]:
        """Up to `limit` pending jobs; with block=True waits for the first, then `batch_wait_s` for companions."""
        jobs: List[Job] = []
        try:
            first = self._pending.get(block=block, timeout=0.5 if block else None)
        except queue.Empty:
            return jobs
        if first is None:
            return jobs
        jobs.append(first)
        if block and self.batch_wait_s > 0:
            time.sleep(self.batch_wait_s)
        while len(jobs) < limit:
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                break
            if job is None:
                break
            jobs.append(job)
        self.metrics.set("myllm_queue_depth", self._pending.qsize())
        return [j for j in jobs if not self._drop_if_cancelled(j)]

    @staticmethod
    def _drop_if_cancelled(job: Job) -> bool:
        if job.cancelled.is_set():
            job.emit(FinishEvent("cancelled", len(job.prompt_ids), 0))
            return True
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            jobs = self._take(block=True, limit=self.max_rows)
            if jobs:
                self._decode(jobs)

    def _decode(self, jobs: List[Job]) -> None:
        raise NotImplementedError("wired to the generator API once it lands")

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
from typing import Dict, List, Optional

from .metrics import ServerMetrics


@dataclass
class TokenEvent:
    """New output of one row: the text it adds (may be "" while a UTF-8 character or a stop string is pending)."""
    text: str
    token_ids: List[int]
    logprobs: Optional[list] = None      # per token: (token_text, logprob, top alternatives: [])


@dataclass
class FinishEvent:
    finish_reason: str                   # "stop" | "length" | "timeout" | "cancelled" | "error"
    prompt_tokens: int
    completion_tokens: int
    message: str = ""
    cached_tokens: int = 0               # prompt tokens whose K/V came from the engine's prefix cache


@dataclass
class Job:
    """One row of generation and the channel its events go back through."""
    prompt_ids: List[int]
    params: object                       # myllm_mc.infer.sampling.SamplingParams
    loop: asyncio.AbstractEventLoop
    deadline: float                      # time.monotonic() after which the row is stopped
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: Optional[float] = None

    def emit(self, event) -> None:      # called from the batcher thread
        emit_all([(self, event)])

    def cancel(self) -> None:
        self.cancelled.set()


def emit_all(pairs: List[tuple]) -> None:
    """Deliver (job, event) pairs from the batcher thread: one wake-up of each event loop per decode step, not one
    per row (each wake-up is a write to the loop's self-pipe and a pass of the loop, which 8 rows paid 8 times)."""
    by_loop: Dict[asyncio.AbstractEventLoop, list] = {}
    now = time.monotonic()
    for job, event in pairs:
        if isinstance(event, TokenEvent) and job.first_token_at is None:
            job.first_token_at = now
        by_loop.setdefault(job.loop, []).append((job, event))
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_put_all, items)


def _put_all(items: list) -> None:
    for job, event in items:
        job.events.put_nowait(event)


class Batcher:
    """Owns a generator (`submit`/`step`/`cancel`, myllm_mc.infer.generator); HTTP handlers `submit` jobs from the
    event loop, the batcher thread feeds them to the generator and runs its steps, one decode step for all rows."""

    def __init__(self, engine, metrics: ServerMetrics, max_rows: int = 8, batch_wait_s: float = 0.005):
        self.engine = engine
        self.metrics = metrics
        self.max_rows = max_rows
        self.batch_wait_s = batch_wait_s
        self._pending: "queue.Queue[Optional[Job]]" = queue.Queue()
        self._live: Dict[int, Job] = {}          # generator request id -> job
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="myllm-batcher", daemon=True)
        self.steps = 0                           # engine steps that produced output
        self.max_rows_seen = 0                   # the most rows one step advanced (the batching test reads it)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; rows still running finish as "cancelled" (uvicorn has drained the requests by now)."""
        self._stop.set()
        self._pending.put(None)
        self._thread.join(timeout)

    @property
    def live_rows(self) -> int:
        """Rows the generator is decoding now (a cancelled request's rows leave before the next step)."""
        return len(self._live)

    def submit(self, job: Job) -> Job:
        self._pending.put(job)
        self.metrics.set("myllm_queue_depth", self._pending.qsize())
        return job

    # --- the batcher thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._admit(block=not self._live)
                self._expire()
                if self._live:
                    self._step()
                    time.sleep(0)         # hand the GIL to the event loop between steps (disconnects, new requests)
        except BaseException as err:          # a broken model must not leave clients waiting forever
            self._fail_all(f"{type(err).__name__}: {err}")
            raise
        finally:
            for request_id, job in list(self._live.items()):
                self.engine.cancel(request_id)
                job.emit(FinishEvent("cancelled", len(job.prompt_ids), 0))
            self._live.clear()

    def _admit(self, block: bool) -> None:
        """Hand new jobs to the generator. When idle, wait for one, then `batch_wait_s` for companions, so that
        requests arriving together are prefilled together."""
        try:
            first = self._pending.get(timeout=0.5) if block else self._pending.get_nowait()
        except queue.Empty:
            return
        jobs = [first]
        if block and self.batch_wait_s > 0:
            time.sleep(self.batch_wait_s)
        while True:
            try:
                jobs.append(self._pending.get_nowait())
            except queue.Empty:
                break
        self.metrics.set("myllm_queue_depth", 0)
        for job in jobs:
            if job is None:
                continue
            if job.cancelled.is_set():
                self.metrics.inc("myllm_cancelled_rows_total")
                job.emit(FinishEvent("cancelled", len(job.prompt_ids), 0))
                continue
            try:
                request_id = self.engine.submit(job.prompt_ids, job.params)
            except ValueError as err:          # GenerationError: the server validated first, so this is a bug
                job.emit(FinishEvent("error", len(job.prompt_ids), 0, str(err)))
                continue
            self._live[request_id] = job

    def _expire(self) -> None:
        """Cancelled jobs (client gone) and jobs past their deadline leave the generator before the next step."""
        now = time.monotonic()
        for request_id, job in list(self._live.items()):
            reason = "cancelled" if job.cancelled.is_set() else "timeout" if now > job.deadline else None
            if reason is None:
                continue
            event = self.engine.cancel(request_id)
            del self._live[request_id]
            if reason == "cancelled":
                self.metrics.inc("myllm_cancelled_rows_total")
            made = event.completion.completion_tokens if event is not None and event.completion else 0
            job.emit(FinishEvent(reason, len(job.prompt_ids), made))
            self.metrics.set("myllm_batch_rows", len(self._live))

    def _step(self) -> None:
        started = time.perf_counter()
        events = self.engine.step()
        if not events:
            return
        self.steps += 1
        self.max_rows_seen = max(self.max_rows_seen, len(events))
        self.metrics.observe("myllm_decode_step_seconds", time.perf_counter() - started)
        self.metrics.observe("myllm_decode_batch_rows", len(events))
        self.metrics.set("myllm_batch_rows", len(self._live))
        waiting = len(getattr(self.engine, "queue", ()))         # admitted to the generator, not yet in a row
        self.metrics.set("myllm_queue_depth", self._pending.qsize() + waiting)
        out = []
        for event in events:
            job = self._live.get(event.request_id)
            if job is None:
                continue
            if event.token_ids or event.text:
                out.append((job, TokenEvent(event.text, list(event.token_ids), self._logprobs(job, event))))
            if event.finished:
                del self._live[event.request_id]
                done = event.completion
                out.append((job, FinishEvent(done.finish_reason, done.prompt_tokens, done.completion_tokens,
                                             cached_tokens=done.cached_tokens)))
        emit_all(out)
        self.metrics.set("myllm_batch_rows", len(self._live))

    def _logprobs(self, job: Job, event) -> Optional[list]:
        if not job.params.logprobs or not event.logprobs:
            return None
        decode = self.engine.tokenizer.decode
        return [(decode([token]), float(logprob), []) for token, logprob in zip(event.token_ids, event.logprobs)]

    def _fail_all(self, message: str) -> None:
        for job in list(self._live.values()):
            job.emit(FinishEvent("error", len(job.prompt_ids), 0, message))
        self._live.clear()
        while True:
            try:
                job = self._pending.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.emit(FinishEvent("error", len(job.prompt_ids), 0, message))

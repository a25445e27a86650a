"""The server's counters, gauges and histograms, rendered in the Prometheus text exposition format (version 0.0.4).

Why not prometheus_client: the handful of series here fit in one small class with no global registry, so two
servers in one process (tests) never share numbers.
"""

from __future__ import annotations

import bisect
import threading
from typing import Dict, Sequence, Tuple

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class _Histogram:
    def __init__(self, buckets: Sequence[float]):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)     # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str) -> list:
        out, running = [], 0
        for bound, count in zip(self.buckets + (float("inf"),), self.counts):
            running += count
            label = "+Inf" if bound == float("inf") else repr(float(bound))
            out.append(f'{name}_bucket{{le="{label}"}} {running}')
        out += [f"{name}_sum {self.total!r}", f"{name}_count {running}"]
        return out


class ServerMetrics:
    """Thread-safe: the HTTP handlers (event loop) and the batcher (its own thread) both record here."""

    HELP = {
        "myllm_requests_total": ("counter", "HTTP requests answered, by route and status code"),
        "myllm_prompt_tokens_total": ("counter", "prompt tokens admitted for generation"),
        "myllm_completion_tokens_total": ("counter", "tokens generated"),
        "myllm_prefix_cached_tokens_total": ("counter", "prompt tokens taken from the prefix cache, not prefilled"),
        "myllm_rejected_total": ("counter", "requests refused before generation, by reason"),
        "myllm_cancelled_rows_total": ("counter", "generation rows stopped because their client went away"),
        "myllm_connections_closed_total": ("counter", "connections the server closed: idle, read_timeout (a request "
                                                      "too slow to arrive), over_limit (at --max-connections)"),
        "myllm_open_connections": ("gauge", "open HTTP connections"),
        "myllm_requests_in_flight": ("gauge", "requests holding a concurrency slot"),
        "myllm_queue_depth": ("gauge", "generation jobs waiting for a decode batch"),
        "myllm_batch_rows": ("gauge", "rows in the decode batch now running"),
        "myllm_request_latency_seconds": ("histogram", "time from request to last byte of a generation"),
        "myllm_time_to_first_token_seconds": ("histogram", "time from request to its first generated token"),
        "myllm_decode_step_seconds": ("histogram", "wall time of one batched decode step"),
        "myllm_decode_batch_rows": ("histogram", "rows per decode step"),
    }

    def __init__(self):
        self._lock = threading.Lock()
        self._counters: Dict[Tuple[str, Tuple], float] = {}
        self._gauges: Dict[str, float] = {"myllm_requests_in_flight": 0, "myllm_queue_depth": 0,
                                          "myllm_batch_rows": 0, "myllm_open_connections": 0}
        self._histograms = {
            "myllm_request_latency_seconds": _Histogram(LATENCY_BUCKETS),
            "myllm_time_to_first_token_seconds": _Histogram(LATENCY_BUCKETS),
            "myllm_decode_step_seconds": _Histogram(STEP_BUCKETS),
            "myllm_decode_batch_rows": _Histogram(BATCH_BUCKETS),
        }

    def inc(self, name: str, amount: float = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._histograms[name].observe(value)

    def counter(self, name: str, **labels) -> float:
        with self._lock:
            if labels:
                return self._counters.get((name, tuple(sorted(labels.items()))), 0)
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def render(self) -> str:
        lines = []
        with self._lock:
            for name, (kind, help_) in self.HELP.items():
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
                if kind == "counter":
                    series = sorted((labels, v) for (n, labels), v in self._counters.items() if n == name)
                    lines += [f"{name}{_labels(labels)} {_number(v)}" for labels, v in series] or [f"{name} 0"]
                elif kind == "gauge":
                    lines.append(f"{name} {_number(self._gauges[name])}")
                else:
                    lines += self._histograms[name].lines(name)
        return "\n".join(lines) + "\n"


def _labels(labels: Tuple) -> str:
    if not labels:
        return ""
    escaped = (str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in labels)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(labels, escaped)) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))

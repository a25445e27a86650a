"""The server's limits and their defaults, and the concurrency gate that turns "full" into 429 at once.

Why refuse instead of queue without bound: a client waiting on a full server cannot tell a slow answer from a
dead one; 429 with Retry-After tells it to come back, and keeps the memory and latency of the admitted requests
bounded. Defaults suit the single-process CPU/one-GPU server; each one is a `myllm serve` flag.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional

API_KEY_ENV = "MYLLM_API_KEY"


@dataclass(frozen=True)
class ServerSettings:
    model_name: str = "myllm"
    api_key: Optional[str] = None               # None: no key needed (the server binds 127.0.0.1 by default)
    max_body_bytes: int = 1 << 20               # 1 MiB of request JSON
    max_prompt_tokens: Optional[int] = None     # None: the model's context (seq_length) minus one
    max_tokens_limit: int = 512                 # the most tokens one request may ask for
    default_max_tokens: int = 128               # when the request says nothing
    max_concurrent_requests: int = 16           # requests holding a slot (queued or decoding); more get 429
    max_batch_rows: int = 8                     # rows decoded together in one step
    batch_wait_s: float = 0.005                 # how long a new batch waits for companions that arrive together
    request_timeout_s: float = 120.0            # a generation still running after this is stopped (504)
    retry_after_s: int = 1                      # the Retry-After header of a 429
    drain_timeout_s: float = 30.0               # SIGTERM: how long in-flight requests may take to finish
    # connections (serve/connections.py): a client that opens sockets and sends nothing, or a byte at a time
    # (slow-loris), must not exhaust the server's file descriptors
    max_connections: int = 256                  # open connections; at the cap the longest-idle one is closed
    keep_alive_timeout_s: float = 5.0           # a connection with no request in progress and no byte for this long
    read_timeout_s: float = 10.0                # a request's head, and then its body, must arrive within this

    def check(self) -> None:
        """Raise ValueError (one line, naming the flag) for limits that cannot work together."""
        positive = {"--max-body-bytes": self.max_body_bytes, "--max-tokens-limit": self.max_tokens_limit,
                    "--max-concurrent": self.max_concurrent_requests, "--max-batch": self.max_batch_rows,
                    "--request-timeout": self.request_timeout_s, "--default-max-tokens": self.default_max_tokens,
                    "--max-connections": self.max_connections, "--keep-alive-timeout": self.keep_alive_timeout_s,
                    "--read-timeout": self.read_timeout_s}
        for flag, value in positive.items():
            if value <= 0:
                raise ValueError(f"{flag} must be positive, got {value} — fix: pass a number above 0 or leave the "
                                 f"default")
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError(f"--default-max-tokens {self.default_max_tokens} exceeds --max-tokens-limit "
                             f"{self.max_tokens_limit} — fix: lower it or raise the limit")
        if self.max_connections < self.max_concurrent_requests:
            raise ValueError(f"--max-connections {self.max_connections} is below --max-concurrent "
                             f"{self.max_concurrent_requests}: some request slots could never be used — fix: raise "
                             f"--max-connections or lower --max-concurrent")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError(f"the API key (--api-key or {API_KEY_ENV}) is empty — fix: set a non-empty key or "
                             f"unset it")


class ConcurrencyGate:
    """A non-blocking counting semaphore: `try_acquire` says no at once when every slot is taken."""

    def __init__(self, slots: int):
        self.slots = slots
        self._used = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._used >= self.slots:
                return False
            self._used += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._used <= 0:
                raise RuntimeError("ConcurrencyGate released more often than acquired")
            self._used -= 1

    @property
    def in_use(self) -> int:
        return self._used

"""Server faults of issue #29: a client that drops a non-streamed request, bodies that broke the JSON parser or
the sampler (500s that were not counted), and idle or slow connections that were never closed.

Each test asserts counts (tokens decoded, requests counted, sockets the server closed), not speed; the timings it
prints are for docs/reliability.md."""

from __future__ import annotations

import json
import re
import select
import socket
import time

import pytest

from tests.serve.serve_helpers import API_KEY, SENTENCES, ServerProcess

COMPLETIONS = "/v1/completions"
PROMPTS = [" ".join(s.split()[:2]) for s in SENTENCES]
LONG = 1000                       # tokens each dropped request asks for (the context is raised to 1024 below)


def _metric(text: str, name: str, **labels) -> float:
    """The sum of a series' samples whose labels include `labels`."""
    total = 0.0
    for found, value in re.findall(rf"^{name}((?:{{[^}}]*}})?) (\S+)$", text, re.M):
        if all(f'{k}="{v}"' in found for k, v in labels.items()):
            total += float(value)
    return total


def _metrics(server) -> str:
    with server.client() as http:
        return http.get("/metrics").text


def _port(server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _raw_request(port: int, path: str, body: bytes) -> socket.socket:
    """A request written on a socket of our own, so that the test decides when the connection goes away."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body)
    return sock


def _wait_for(predicate, timeout: float, every: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def _idle(health: dict) -> bool:
    return health["in_flight"] == 0 and health["decoding_rows"] == 0


@pytest.fixture(scope="module")
def long_server(serve_model, tmp_path_factory):
    """A context of 1024 tokens (RoPE: the model trained on 64 still decodes), 1000 tokens per request, 8 rows per
    step: a dropped request would decode for seconds."""
    overrides, checkpoint = serve_model
    with ServerProcess([*overrides, "model.seq_length=1024"], checkpoint, tmp_path_factory.mktemp("faults-server"),
                       "--api-key", API_KEY, "--max-concurrent", "16", "--max-batch", "8",
                       "--max-tokens-limit", str(LONG)) as server:
        yield server


# --- case 10: a dropped non-streamed request ----------------------------------------------------------------------
def test_a_dropped_non_streamed_request_stops_decoding_at_once(long_server):
    """8 clients ask for 1000 tokens each (non-streamed) and hang up once the server holds their requests; a normal
    request follows. The rows must leave the generator at once: the tokens decoded after the drop stay small."""
    port = _port(long_server)
    with long_server.client() as http:
        sockets = [_raw_request(port, COMPLETIONS, json.dumps({"prompt": p, "max_tokens": LONG, "temperature": 0})
                                .encode()) for p in PROMPTS]
        held = _wait_for(lambda: http.get("/health").json()["in_flight"] == 8, 60, every=0.01)
        assert held, http.get("/health").json()
        before = http.get("/metrics").text
        for sock in sockets:
            sock.close()                                         # the clients go away mid-generation
        dropped = time.perf_counter()
        normal = http.post(COMPLETIONS, json={"prompt": PROMPTS[0], "max_tokens": 24, "temperature": 0})
        normal_wait = time.perf_counter() - dropped
        idle = _wait_for(lambda: _idle(http.get("/health").json()), 120, every=0.05)
        after = http.get("/metrics").text
    assert normal.status_code == 200 and normal.json()["usage"]["completion_tokens"] == 24
    assert idle, "the dropped requests still hold their slots or rows"
    rows = _metric(after, "myllm_decode_batch_rows_sum") - _metric(before, "myllm_decode_batch_rows_sum")
    for_nobody = rows - 24                                       # decode-step rows after the drop, less the normal ones
    print(f"\ndropped non-streamed requests: {for_nobody:.0f} tokens decoded for them after the drop "
          f"(without cancellation up to 8 x {LONG}); the normal request behind them took {normal_wait:.2f} s")
    assert for_nobody <= 0.1 * 8 * LONG, f"{for_nobody:.0f} tokens decoded for clients that had gone"
    cancelled = _metric(after, "myllm_cancelled_rows_total") - _metric(before, "myllm_cancelled_rows_total")
    gone = (_metric(after, "myllm_requests_total", route=COMPLETIONS, status="499")
            - _metric(before, "myllm_requests_total", route=COMPLETIONS, status="499"))
    assert cancelled == 8 and gone == 8, (cancelled, gone)


# --- case 11: bodies that raised inside the server ----------------------------------------------------------------
DEEP = 100_000
BAD = [
    ("JSON nested 100,000 deep", "[" * DEEP + "]" * DEEP, 400, None, "nested too deeply"),
    ("a field nested 100,000 deep", '{"prompt": "x", "logit_bias": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}",
     400, None, "nested too deeply"),
    ("seed 2**70", json.dumps({"prompt": "x", "max_tokens": 2, "seed": 2**70}), 422, "seed",
     "less than or equal to 9223372036854775807"),
    ("seed -2**70", json.dumps({"prompt": "x", "max_tokens": 2, "seed": -2**70}), 422, "seed",
     "greater than or equal to -9223372036854775808"),
]


@pytest.mark.parametrize("case,body,status,param,text", BAD, ids=[row[0] for row in BAD])
def test_bodies_that_raised_are_4xx_with_an_openai_error_and_counted(long_server, case, body, status, param, text):
    before = _metrics(long_server)
    with long_server.client() as http:
        response = http.post(COMPLETIONS, content=body, headers={"Content-Type": "application/json"})
        after = http.get("/metrics").text
    assert response.status_code == status, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert text in error["message"] and "\n" not in error["message"], error
    counted = (_metric(after, "myllm_requests_total", route=COMPLETIONS, status=str(status))
               - _metric(before, "myllm_requests_total", route=COMPLETIONS, status=str(status)))
    assert counted == 1


def test_the_largest_seed_with_n_4_still_samples(long_server):
    with long_server.client() as http:
        done = http.post(COMPLETIONS, json={"prompt": PROMPTS[1], "max_tokens": 3, "n": 4, "seed": 2**63 - 1})
    assert done.status_code == 200 and len(done.json()["choices"]) == 4


def test_an_unexpected_error_is_an_openai_500_and_counted():
    """The middleware's last resort: a handler that raises is answered with a JSON 500 that is counted."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from myllm_mc.serve.app import GuardMiddleware
    from myllm_mc.serve.limits import ServerSettings
    from myllm_mc.serve.metrics import ServerMetrics

    async def broken(request):
        raise RuntimeError("a bug")

    class State:
        settings, metrics = ServerSettings(), ServerMetrics()

    app = Starlette(routes=[Route("/v1/completions", broken, methods=["POST"])])
    app.add_middleware(GuardMiddleware, state=State)
    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.post(COMPLETIONS, json={})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    assert State.metrics.counter("myllm_requests_total", route=COMPLETIONS, status="500") == 1


# --- case 12: idle and slow connections ---------------------------------------------------------------------------
CAP, KEEP_ALIVE, READ = 16, 3, 4


@pytest.fixture(scope="module")
def guarded_server(serve_model, tmp_path_factory):
    overrides, checkpoint = serve_model
    with ServerProcess(overrides, checkpoint, tmp_path_factory.mktemp("guarded-server"), "--api-key", API_KEY,
                       "--max-concurrent", "8", "--max-connections", str(CAP), "--keep-alive-timeout",
                       str(KEEP_ALIVE), "--read-timeout", str(READ)) as server:
        yield server


def _closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or answered and closed) this connection: it is readable, with EOF or an answer."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def test_idle_and_slow_connections_are_closed_and_capped(guarded_server):
    port = _port(guarded_server)
    started = time.perf_counter()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(40)]   # never send a byte
    open_now = lambda: sum(not _closed_by_server(s) for s in idle)                        # noqa: E731
    capped = _wait_for(lambda: open_now() <= CAP, 2)
    held = open_now()
    with guarded_server.client() as http:                     # a real request, over the cap: an idle one makes room
        answered = http.post(COMPLETIONS, json={"prompt": PROMPTS[0], "max_tokens": 6, "temperature": 0})
    assert capped, f"{held} of 40 idle connections still open (cap {CAP})"
    assert answered.status_code == 200
    all_closed = _wait_for(lambda: open_now() == 0, KEEP_ALIVE + 5)
    idle_gone = time.perf_counter() - started
    assert all_closed, f"{open_now()} idle connections still open {KEEP_ALIVE + 5} s after the keep-alive timeout"

    # slow-loris: a request head that never ends, one byte every 0.3 s
    loris = socket.create_connection(("127.0.0.1", port), timeout=30)
    loris.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    began, cut = time.perf_counter(), None
    while time.perf_counter() - began < READ + 6:
        try:
            loris.sendall(b"X")
        except OSError:
            cut = time.perf_counter() - began
            break
        if _closed_by_server(loris):
            cut = time.perf_counter() - began
            break
        time.sleep(0.3)
    assert cut is not None and cut >= READ - 0.5, f"a never-ending request head was not cut (after {cut})"

    # a body that never ends: 408 with an OpenAI error body
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(f"POST {COMPLETIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"prompt\"".encode())
    reply = b""
    while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
        chunk = slow.recv(65536)
        if not chunk:
            break
        reply += chunk
    slow.close()
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"

    metrics = _metrics(guarded_server)
    print(f"\n40 idle connections, cap {CAP}: {held} held after the cap, all closed {idle_gone:.1f} s after opening; "
          f"a never-ending head cut after {cut:.1f} s")
    assert _metric(metrics, "myllm_connections_closed_total", reason="over_limit") >= 40 - CAP
    assert _metric(metrics, "myllm_connections_closed_total", reason="idle") >= 1
    assert _metric(metrics, "myllm_connections_closed_total", reason="read_timeout") >= 1
    assert _metric(metrics, "myllm_open_connections") <= 2        # this /metrics request and perhaps one more
    with guarded_server.client() as http:
        assert http.post(COMPLETIONS, json={"prompt": PROMPTS[1], "max_tokens": 4}).status_code == 200

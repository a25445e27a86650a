"""The OpenAI-compatible HTTP API (Starlette on uvicorn): /v1/models, /v1/completions, /v1/chat/completions
(SSE streaming in the OpenAI chunk format, ending with `data: [DONE]`), /health, /metrics and the chat page at /.

Every refusal happens before a job reaches the batcher and answers with an OpenAI-style error body: a bad body
(400/413/422), a body that does not arrive in time (408), a missing key (401), an over-long prompt or max_tokens
(400), a full server (429 + Retry-After); an unexpected error is a counted JSON 500, never a bare one.
A client that goes away mid-generation, streamed or not, cancels its rows and frees its slot at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
import uuid
from importlib import resources
from typing import List

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .batcher import Batcher, FinishEvent, Job, TokenEvent
from .limits import ConcurrencyGate, ServerSettings
from .metrics import ServerMetrics
from .schemas import ApiError, ChatCompletionRequest, CompletionRequest, error_body, parse

OPEN_PATHS = ("/health", "/")     # no key: the liveness probe, and the static page (it holds no data; it sends the key)


class ServerState:
    """What the handlers share: settings, tokenizer, batcher, gate, metrics, and whether we are draining."""

    def __init__(self, settings: ServerSettings, tokenizer, context_length: int, batcher: Batcher,
                 metrics: ServerMetrics):
        self.settings, self.tokenizer, self.batcher, self.metrics = settings, tokenizer, batcher, metrics
        self.context_length = context_length
        self.max_prompt_tokens = settings.max_prompt_tokens or context_length - 1
        self.gate = ConcurrencyGate(settings.max_concurrent_requests)
        self.created = int(time.time())
        self.draining = False


# --- middleware: key, body size, request counting --------------------------------------------------------------
class GuardMiddleware:
    """Pure ASGI: checks the API key and the body size before a handler runs, and counts every answer."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, settings, metrics = scope["path"], self.state.settings, self.state.metrics
        status_seen = {}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
                metrics.inc("myllm_requests_total", route=_route_label(path), status=str(message["status"]))
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if settings.api_key is not None and path not in OPEN_PATHS:
            given = headers.get("authorization", "")
            token = given[7:].strip() if given.lower().startswith("bearer ") else ""
            if not secrets.compare_digest(token.encode(), settings.api_key.encode()):
                reason = "missing" if not given else "wrong"
                return await _send_error(counting_send, ApiError(
                    401, f"API key {reason} — fix: send the header 'Authorization: Bearer <key>' with the key the "
                         f"server was started with", kind="authentication_error", code="invalid_api_key"))
        limit = settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return await _send_error(counting_send, _too_large(limit))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, counting_send)
        except _BodyTooLarge:
            if "status" not in status_seen:
                await _send_error(counting_send, _too_large(limit))
        except Exception as err:           # a bug: answer (and count) a JSON 500 instead of Starlette's bare one
            if "status" in status_seen:
                raise
            logging.getLogger("uvicorn.error").error("%s %s failed", scope.get("method"), path, exc_info=err)
            detail = (str(err).splitlines() or [""])[0][:200]
            await _send_error(counting_send, ApiError(
                500, f"internal error ({type(err).__name__}: {detail}) — the server log has the traceback",
                kind="server_error", code="internal_error"))


class _BodyTooLarge(Exception):
    pass


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body larger than {limit} bytes — fix: send a shorter prompt or start the "
                         f"server with a larger --max-body-bytes", code="request_too_large")


def _route_label(path: str) -> str:
    known = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/")
    return path if path in known else "other"


async def _send_error(send, err: ApiError) -> None:
    response = JSONResponse(err.body(), status_code=err.status, headers=err.headers)
    await response({"type": "http"}, None, send)


# --- handlers -------------------------------------------------------------------------------------------------
def build_app(state: ServerState) -> Starlette:
    async def health(request: Request):
        if state.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        return JSONResponse({"status": "ok", "model": state.settings.model_name,
                             "in_flight": state.gate.in_use, "decoding_rows": state.batcher.live_rows})

    async def metrics(request: Request):
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [_model_card(state)]})

    async def page(request: Request):
        return HTMLResponse(_chat_page())

    async def completions(request: Request):
        return await _generate(request, state, chat=False)

    async def chat_completions(request: Request):
        return await _generate(request, state, chat=True)

    routes = [Route("/", page), Route("/health", health), Route("/metrics", metrics),
              Route("/v1/models", models), Route("/v1/completions", completions, methods=["POST"]),
              Route("/v1/chat/completions", chat_completions, methods=["POST"])]

    async def api_error(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    async def http_error(request: Request, exc):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        message = {404: f"no route {request.url.path} — fix: use /v1/completions, /v1/chat/completions, "
                        f"/v1/models, /health or /metrics",
                   405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
        return JSONResponse(error_body(message, kind), status_code=exc.status_code)

    app = Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error})
    app.add_middleware(GuardMiddleware, state=state)
    return app


def _model_card(state: ServerState) -> dict:
    return {"id": state.settings.model_name, "object": "model", "created": state.created, "owned_by": "myllm",
            "context_length": state.context_length}


_PAGE_CACHE: List[str] = []


def _chat_page() -> str:
    if not _PAGE_CACHE:
        _PAGE_CACHE.append(resources.files("myllm_mc.serve").joinpath("static/chat.html").read_text("utf-8"))
    return _PAGE_CACHE[0]


async def _read_json(request: Request, timeout_s: float):
    try:                          # a body that trickles in (slow-loris) must not hold a connection forever
        body = await asyncio.wait_for(request.body(), timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s — fix: send it at once (or "
                            f"start the server with a larger --read-timeout)", code="request_timeout",
                       headers={"Connection": "close"}) from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(400, f"the body is not valid JSON ({err}) — fix: send a JSON object with "
                            f"Content-Type: application/json", code="invalid_json") from None
    except RecursionError:        # the parser's stack: hundreds of nested arrays or objects
        raise ApiError(400, "the body's JSON is nested too deeply to parse — fix: send the request's fields, "
                            "which nest a few levels at most", code="invalid_json") from None


def _prompt_ids(state: ServerState, request, chat: bool) -> List[int]:
    tokenizer = state.tokenizer
    if chat:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        try:
            return chat_prompt_ids(tokenizer, messages)
        except ValueError as err:
            raise ApiError(400, str(err), param="messages") from None
    if isinstance(request.prompt, str):
        try:
            return tokenizer.encode(request.prompt)
        except ValueError as err:          # a lone surrogate
            raise ApiError(400, str(err), param="prompt") from None
    bad = [t for t in request.prompt if not 0 <= t < tokenizer.vocab_size]
    if bad:
        raise ApiError(400, f"prompt token id {bad[0]} outside the vocabulary [0, {tokenizer.vocab_size})",
                       param="prompt")
    return list(request.prompt)


def chat_prompt_ids(tokenizer, messages: List[dict]) -> List[int]:
    """The SFT chat template, ending with the assistant header so the model writes the reply."""
    render = getattr(tokenizer, "render_chat", None)
    if render is not None:
        return list(render(messages, add_generation_prompt=True))
    return tokenizer.encode_chat(messages, add_generation_prompt=True)[0]


def _params(state: ServerState, request, chat: bool, prompt_tokens: int):
    settings = state.settings
    if prompt_tokens > state.max_prompt_tokens:
        raise ApiError(400, f"the prompt has {prompt_tokens} tokens, more than the limit {state.max_prompt_tokens} — "
                            f"fix: shorten it", param="messages" if chat else "prompt",
                       code="context_length_exceeded")
    room = state.context_length - prompt_tokens
    asked = request.requested_max_tokens() if chat else request.max_tokens
    if asked is None:
        max_tokens = min(settings.default_max_tokens, room)
    else:
        if asked > settings.max_tokens_limit:
            raise ApiError(400, f"max_tokens {asked} exceeds this server's limit {settings.max_tokens_limit} — fix: "
                                f"ask for at most {settings.max_tokens_limit}", param="max_tokens",
                           code="max_tokens_exceeded")
        if asked > room:
            raise ApiError(400, f"prompt ({prompt_tokens} tokens) + max_tokens ({asked}) exceed the model's context "
                                f"of {state.context_length} tokens — fix: ask for at most {room} tokens",
                           param="max_tokens", code="context_length_exceeded")
        max_tokens = asked
    # not at the top: importing myllm_mc.infer.* runs infer/__init__, which loads torch and megatron-core; the
    # API layer itself stays torch-free
    from myllm_mc.infer.sampling import GenerationError, SamplingParams

    logprobs = bool(request.logprobs) if chat else request.logprobs is not None
    params = SamplingParams(max_new_tokens=max_tokens, temperature=request.temperature, top_p=request.top_p,
                            seed=request.seed, stop=tuple(request.stop or ()), logprobs=logprobs)
    try:
        params.check()                          # the sampler's rules (temperature ≥ 0, top_p in (0, 1], ...)
    except GenerationError as err:
        raise ApiError(422, str(err), param=err.param, code="invalid_value") from None
    return params


async def _generate(request: Request, state: ServerState, chat: bool) -> Response:
    payload = await _read_json(request, state.settings.read_timeout_s)
    body = parse(ChatCompletionRequest if chat else CompletionRequest, payload)
    if body.model is not None and body.model != state.settings.model_name:
        raise ApiError(404, f"model {body.model!r} is not served here — fix: use {state.settings.model_name!r} "
                            f"(GET /v1/models)", param="model", code="model_not_found")
    prompt = _prompt_ids(state, body, chat)
    params = _params(state, body, chat, len(prompt))
    if state.draining:
        raise ApiError(503, "the server is shutting down — fix: retry on another instance", kind="server_error",
                       code="shutting_down")
    if not state.gate.try_acquire():
        state.metrics.inc("myllm_rejected_total", reason="concurrency")
        raise ApiError(429, f"the server is at its limit of {state.settings.max_concurrent_requests} concurrent "
                            f"requests — fix: retry after {state.settings.retry_after_s} s",
                       kind="rate_limit_error", code="too_many_requests",
                       headers={"Retry-After": str(state.settings.retry_after_s)})
    state.metrics.set("myllm_requests_in_flight", state.gate.in_use)
    slot = _Slot(state)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + state.settings.request_timeout_s
    jobs = []
    for choice in range(body.n):
        seed = None if params.seed is None else params.seed + choice
        job = Job(prompt, dataclasses.replace(params, seed=seed), loop, deadline)
        jobs.append(job)
        slot.jobs.append(job)
    state.metrics.inc("myllm_prompt_tokens_total", len(prompt) * body.n)
    for job in jobs:
        state.batcher.submit(job)
    reply = _Reply(state, chat, len(prompt), body)
    if body.stream:
        from sse_starlette.sse import EventSourceResponse  # importing it patches uvicorn's Server.handle_exit
        return EventSourceResponse(_stream(reply, jobs, slot), background=BackgroundTask(slot.release),
                                   ping=15)
    try:
        finishes = await _unless_disconnected(request, _collect(jobs, reply), on_disconnect=slot.release)
    finally:
        slot.release()
    if finishes is None:                # nobody reads this answer; 499 (client closed request) counts it
        return Response(status_code=499)
    if any(f.finish_reason == "timeout" for f in finishes):
        raise ApiError(504, f"generation exceeded the per-request time limit of {state.settings.request_timeout_s} s "
                            f"— fix: ask for fewer max_tokens, or start the server with a larger --request-timeout",
                       kind="server_error", code="timeout")
    failed = [f for f in finishes if f.finish_reason == "error"]
    if failed:
        raise ApiError(500, f"generation failed: {failed[0].message}", kind="server_error")
    return JSONResponse(reply.full(finishes))


class _Slot:
    """The concurrency slot of one request; released exactly once, cancelling rows still running."""

    def __init__(self, state: ServerState):
        self.state, self.jobs, self._released = state, [], False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for job in self.jobs:
            job.cancel()
        self.state.gate.release()
        self.state.metrics.set("myllm_requests_in_flight", self.state.gate.in_use)


async def _collect(jobs: List[Job], reply: "_Reply") -> List[FinishEvent]:
    """Gather every row's events until each row has finished."""
    finishes: List[FinishEvent] = []
    for index, job in enumerate(jobs):
        while True:
            event = await job.events.get()
            if isinstance(event, TokenEvent):
                reply.add(index, event)
                continue
            reply.finished(event, job)
            finishes.append(event)
            break
    return finishes


async def _unless_disconnected(request: Request, work, on_disconnect):
    """`work`'s result, or None (work cancelled) once the client disconnects. The body has been read, so the ASGI
    receive channel's next message is `http.disconnect`, sent the moment the connection closes: no polling, and
    `on_disconnect` (cancel the rows, free the slot) runs right then, before the next decode step."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request.receive, on_disconnect))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task.done() and not task.cancelled() else None


async def _disconnected(receive, on_disconnect) -> None:
    while (await receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)       # not expected after the body; never spin on it
    on_disconnect()


async def _stream(reply: "_Reply", jobs: List[Job], slot: _Slot):
    """SSE events: an opening chunk (chat: the role), one chunk per text delta, a closing chunk with the finish
    reason per choice, optionally a usage chunk, then [DONE]. Cancelled by sse-starlette when the client leaves."""
    try:
        if reply.chat:
            for index in range(len(jobs)):
                yield json.dumps(reply.chunk(index, {"role": "assistant", "content": ""}))
        merged: asyncio.Queue = asyncio.Queue()
        pumps = [asyncio.ensure_future(_pump(index, job, merged)) for index, job in enumerate(jobs)]
        try:
            open_rows = len(jobs)
            while open_rows:
                index, event = await merged.get()
                if isinstance(event, TokenEvent):
                    reply.add(index, event)
                    if event.text or event.logprobs:
                        yield json.dumps(reply.delta_chunk(index, event))
                    continue
                open_rows -= 1
                reply.finished(event, jobs[index])
                if event.finish_reason in ("timeout", "error"):
                    message = (f"generation exceeded the per-request time limit of "
                               f"{reply.state.settings.request_timeout_s} s" if event.finish_reason == "timeout"
                               else f"generation failed: {event.message}")
                    yield json.dumps(error_body(message, "server_error", code=event.finish_reason))
                    return
                yield json.dumps(reply.finish_chunk(index, event.finish_reason))
        finally:
            for pump in pumps:
                pump.cancel()
        if reply.body.stream_options is not None and reply.body.stream_options.include_usage:
            yield json.dumps({**reply.head("chunk"), "choices": [], "usage": reply.usage()})
        yield "[DONE]"
    finally:
        slot.release()


async def _pump(index: int, job: Job, merged: asyncio.Queue) -> None:
    while True:
        event = await job.events.get()
        await merged.put((index, event))
        if isinstance(event, FinishEvent):
            return


class _Reply:
    """Builds the OpenAI response objects of one request from its rows' events."""

    def __init__(self, state: ServerState, chat: bool, prompt_tokens: int, body):
        self.state, self.chat, self.prompt_tokens, self.body = state, chat, prompt_tokens, body
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.texts = [""] * body.n
        self.logprobs: List[list] = [[] for _ in range(body.n)]
        self.completion_tokens = 0
        self.cached_tokens = 0

    def add(self, index: int, event: TokenEvent) -> None:
        self.texts[index] += event.text
        if event.logprobs:
            self.logprobs[index] += event.logprobs

    def finished(self, event: FinishEvent, job: Job) -> None:
        self.completion_tokens += event.completion_tokens
        self.cached_tokens += event.cached_tokens
        metrics = self.state.metrics
        metrics.inc("myllm_completion_tokens_total", event.completion_tokens)
        metrics.inc("myllm_prefix_cached_tokens_total", event.cached_tokens)
        now = time.monotonic()
        metrics.observe("myllm_request_latency_seconds", now - job.submitted)
        if job.first_token_at is not None:
            metrics.observe("myllm_time_to_first_token_seconds", job.first_token_at - job.submitted)

    def usage(self) -> dict:
        prompt = self.prompt_tokens * self.body.n
        return {"prompt_tokens": prompt, "completion_tokens": self.completion_tokens,
                "total_tokens": prompt + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens}}   # OpenAI's field: prefix cache hits

    def head(self, kind: str) -> dict:
        objects = {("chat", "full"): "chat.completion", ("chat", "chunk"): "chat.completion.chunk",
                   ("text", "full"): "text_completion", ("text", "chunk"): "text_completion"}
        return {"id": self.id, "object": objects[("chat" if self.chat else "text", kind)], "created": self.created,
                "model": self.state.settings.model_name, "system_fingerprint": None}

    # --- streaming ---
    def chunk(self, index: int, delta: dict, finish_reason=None, logprobs=None) -> dict:
        if self.chat:
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": delta.get("content", ""), "logprobs": logprobs,
                      "finish_reason": finish_reason}
        return {**self.head("chunk"), "choices": [choice]}

    def delta_chunk(self, index: int, event: TokenEvent) -> dict:
        logprobs = self._logprobs(event.logprobs, self.texts[index][:len(self.texts[index]) - len(event.text)]) \
            if event.logprobs else None
        return self.chunk(index, {"content": event.text}, logprobs=logprobs)

    def finish_chunk(self, index: int, reason: str) -> dict:
        return self.chunk(index, {}, finish_reason=_openai_reason(reason))

    # --- whole answer ---
    def full(self, finishes: List[FinishEvent]) -> dict:
        choices = []
        for index, finish in enumerate(finishes):
            logprobs = self._logprobs(self.logprobs[index], "") if self.logprobs[index] else None
            reason = _openai_reason(finish.finish_reason)
            if self.chat:
                choices.append({"index": index, "message": {"role": "assistant", "content": self.texts[index]},
                                "logprobs": logprobs, "finish_reason": reason})
            else:
                choices.append({"index": index, "text": self.texts[index], "logprobs": logprobs,
                                "finish_reason": reason})
        return {**self.head("full"), "choices": choices, "usage": self.usage()}

    def _logprobs(self, entries: list, text_before: str) -> dict:
        if self.chat:
            return {"content": [{"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")),
                                 "top_logprobs": [{"token": t, "logprob": p, "bytes": list(t.encode("utf-8"))}
                                                  for t, p in top]} for tok, lp, top in entries]}
        offsets, offset = [], len(text_before)
        for tok, _, _ in entries:
            offsets.append(offset)
            offset += len(tok)
        want_top = bool(self.body.logprobs)
        return {"tokens": [tok for tok, _, _ in entries], "token_logprobs": [lp for _, lp, _ in entries],
                "top_logprobs": [dict(top) for _, _, top in entries] if want_top else None,
                "text_offset": offsets}


def _openai_reason(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"

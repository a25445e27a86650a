"""`myllm serve CONFIG --checkpoint DIR [--host 127.0.0.1] [--port 8000] [--api-key KEY] [limits...]`.

An OpenAI-compatible server for a checkpoint of ours: /v1/completions, /v1/chat/completions (streaming as
server-sent events), /v1/models, /health, /metrics, and a chat page at /. It binds 127.0.0.1 unless --host says
otherwise; with --api-key (or MYLLM_API_KEY) every route but /health and the static page needs
`Authorization: Bearer KEY`. SIGTERM or Ctrl-C stops accepting connections, lets the requests in flight finish
(up to --drain-timeout seconds), then exits 0.

Exit codes: 0 stopped cleanly; 2 bad arguments, config or checkpoint, or the port is taken (said before the model
is loaded where it can be known then).
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import time

from myllm_mc.config import ConfigError
from myllm_mc.config.arguments import add_config_arguments

from .batcher import Batcher
from .limits import API_KEY_ENV, ServerSettings
from .metrics import ServerMetrics


def _parser() -> argparse.ArgumentParser:
    defaults = ServerSettings()
    parser = argparse.ArgumentParser(prog="myllm serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint root (its latest step), a step_NNNNNNN directory, or a model save")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--api-key", default=None, help=f"require this bearer key (default: ${API_KEY_ENV} if set)")
    parser.add_argument("--model-name", default=None, help="the model id clients send (default: the config's name)")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    parser.add_argument("--max-prompt-tokens", type=int, default=None,
                        help="default: the model's seq_length minus one")
    parser.add_argument("--max-tokens-limit", type=int, default=defaults.max_tokens_limit,
                        help="the most tokens one request may ask for")
    parser.add_argument("--default-max-tokens", type=int, default=defaults.default_max_tokens)
    parser.add_argument("--max-concurrent", type=int, default=defaults.max_concurrent_requests,
                        help="requests in flight at once; more get 429 with Retry-After")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch_rows, help="rows per decode step")
    parser.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s,
                        help="seconds a generation may run before it is stopped (504)")
    parser.add_argument("--drain-timeout", type=float, default=defaults.drain_timeout_s,
                        help="seconds SIGTERM waits for requests in flight")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="open connections; over it the longest-idle one is closed (503 if all are busy)")
    parser.add_argument("--keep-alive-timeout", type=float, default=defaults.keep_alive_timeout_s,
                        help="seconds a connection may sit idle (no request in progress) before it is closed")
    parser.add_argument("--read-timeout", type=float, default=defaults.read_timeout_s,
                        help="seconds a request's head, then its body, may take to arrive (slow clients: closed, "
                             "408)")
    return parser


def _settings(args, model_name: str) -> ServerSettings:
    key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV)
    settings = ServerSettings(
        model_name=args.model_name or model_name, api_key=key, max_body_bytes=args.max_body_bytes,
        max_prompt_tokens=args.max_prompt_tokens, max_tokens_limit=args.max_tokens_limit,
        default_max_tokens=min(args.default_max_tokens, args.max_tokens_limit),
        max_concurrent_requests=args.max_concurrent, max_batch_rows=args.max_batch,
        request_timeout_s=args.request_timeout, drain_timeout_s=args.drain_timeout,
        max_connections=args.max_connections, keep_alive_timeout_s=args.keep_alive_timeout,
        read_timeout_s=args.read_timeout)
    settings.check()
    return settings


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket before loading the model: a taken port is known in milliseconds, not minutes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port}: address {host}:{port} is already in use — fix: stop the other "
                              f"server or pick another port (--port 0 picks a free one)") from None
        raise ConfigError(f"--host {host}: cannot bind ({err.strerror}) — fix: use 127.0.0.1, 0.0.0.0 or an "
                          f"address of this machine") from None
    sock.set_inheritable(True)
    return sock


def main(argv) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: not a TCP port — fix: use 1..65535 (or 0 for a free one)")
    from myllm_mc.infer.loader import inference_config, load_tokenizer, resolve_checkpoint  # torch: see serve()

    cfg = inference_config(args.config, args.overrides, world_size=1)
    try:
        resolve_checkpoint(args.checkpoint, cfg)
        load_tokenizer(cfg)
        settings = _settings(args, cfg.model.name)
    except ValueError as err:          # GenerationError, TokenizerError, a limit: one line, exit 2
        raise ConfigError(str(err)) from None
    sock = _bind(args.host, args.port)
    return serve(cfg, args.checkpoint, settings, sock)


def serve(cfg, checkpoint: str, settings: ServerSettings, sock: socket.socket) -> int:
    """Load the model, start the batcher and run uvicorn on `sock` until SIGTERM/SIGINT; then drain and exit."""
    # deferred to here: the serve extra (uvicorn, starlette) and the model stack (torch, megatron-core), so that
    # `myllm serve --help` and every refusal before the model loads need neither
    import uvicorn

    from myllm_mc.infer.loader import load_generator
    from myllm_mc.parallel.state import destroy

    from .app import ServerState, build_app
    from .connections import guarded_protocol

    started = time.monotonic()
    generator = load_generator(cfg, checkpoint, max_batch_size=settings.max_batch_rows)
    metrics = ServerMetrics()
    batcher = Batcher(generator, metrics, max_rows=settings.max_batch_rows,
                      batch_wait_s=settings.batch_wait_s).start()
    state = ServerState(settings, generator.tokenizer, generator.max_seq, batcher, metrics)
    app = build_app(state)
    host, port = sock.getsockname()[:2]

    key = "on (Authorization: Bearer)" if settings.api_key else "off"
    ready = (f"serving {settings.model_name} on http://{host}:{port} — chat page at /, OpenAI API at /v1; "
             f"API key {key}; limits: {settings.max_concurrent_requests} concurrent, {settings.max_batch_rows} "
             f"rows/step, max_tokens ≤ {settings.max_tokens_limit}, {settings.request_timeout_s:g} s/request, "
             f"{settings.max_connections} connections")

    class DrainingServer(uvicorn.Server):
        async def startup(self, sockets=None):       # the ready line once connections are really accepted
            await super().startup(sockets=sockets)
            if self.started:
                print(f"{ready}; ready {time.monotonic() - started:.1f} s after start", flush=True)

        def handle_exit(self, sig, frame):            # SIGTERM/SIGINT: refuse new work, finish what runs
            state.draining = True
            super().handle_exit(sig, frame)

    # sse-starlette ends every open stream the moment uvicorn sees SIGTERM; a drain lets them finish instead
    # (each is bounded by its max_tokens and --request-timeout, and uvicorn by --drain-timeout)
    from sse_starlette.sse import AppStatus
    AppStatus.disable_automatic_graceful_drain()
    # the h11 protocol with our connection limits (serve/connections.py), also where httptools is installed
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=settings.drain_timeout_s,
                            access_log=False, http=guarded_protocol(settings, metrics),
                            timeout_keep_alive=settings.keep_alive_timeout_s)
    server = DrainingServer(config)
    # uvicorn restores the handlers it found and then re-raises the signal it caught; with these in place that
    # re-raise only records it, so the drained server exits 0 after its summary instead of dying by SIGTERM
    caught = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, frame: caught.append(signal.Signals(number).name))
    try:
        server.run(sockets=[sock])
    finally:
        batcher.stop()
        destroy()
    why = f" on {caught[0]}" if caught else ""
    print(f"stopped{why}: {int(metrics.counter('myllm_requests_total'))} requests answered, "
          f"{int(metrics.counter('myllm_completion_tokens_total'))} tokens generated", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

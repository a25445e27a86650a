"""What continuous batching buys a `myllm serve` process: the same C requests sent by C concurrent clients against
one client sending them one after another, on the same server, alternated, medians:

    python -m myllm_mc.bench.serve_load CONFIG --checkpoint DIR [--clients 8] [--tokens 128] [--rounds 3]

The server is started as users start it (`myllm serve ... --port 0`, its own process, `--threads` intra-op threads)
and measured over localhost with streaming greedy completions of up to `--tokens` tokens (the same prompts both ways,
so the same tokens). Tokens/s counts completion tokens over the wall time of all requests (prefill, HTTP and SSE
framing included: what clients see). The baseline is one client on the same server in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["The history of the city", "In the morning the farmer", "A recipe for bread needs", "The ship sailed",
           "Scientists found that", "Once upon a time a fox", "The best way to learn", "Under the old bridge"]


def start_server(config: str, checkpoint: str, overrides, threads: int, max_batch: int, log: Path):
    command = [sys.executable, "-m", "myllm_mc.cli", "serve", config, "--checkpoint", checkpoint, "--port", "0",
               "--max-batch", str(max_batch), "--max-concurrent", str(max(max_batch, 8)),
               "--max-tokens-limit", "4096", *(["--set", *overrides] if overrides else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600
    while True:
        match = re.search(r"on (http://[0-9.]+:\d+)", log.read_text(errors="replace"))
        if match:
            return proc, match.group(1)
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            sys.exit(f"myllm serve did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)


def stop_server(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


async def _one(client, prompt: str, tokens: int) -> tuple[int, str]:
    body = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    made, text = 0, ""
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            sys.exit(f"the server answered {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    made = chunk["usage"]["completion_tokens"]
                text += "".join(c.get("text", "") for c in chunk["choices"])
    return made, text


async def _round(url: str, clients: int, tokens: int, concurrent: bool) -> tuple[float, list]:
    """The same `clients` requests, all at once or one after another (one client): tokens/s and their texts."""
    import httpx

    limits = httpx.Limits(max_connections=clients)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(clients)]
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        started = time.perf_counter()
        if concurrent:
            done = await asyncio.gather(*(_one(client, p, tokens) for p in prompts))
        else:
            done = [await _one(client, p, tokens) for p in prompts]
        wall = time.perf_counter() - started
    return sum(n for n, _ in done) / wall, [t for _, t in done]


def measure(url: str, clients: int, tokens: int, rounds: int) -> dict:
    asyncio.run(_round(url, 1, 8, False))                                            # warm-up
    rates: dict = {"one": [], "many": []}
    texts: dict = {}
    for r in range(rounds):
        for kind in (("one", "many") if r % 2 == 0 else ("many", "one")):
            rate, out = asyncio.run(_round(url, clients, tokens, concurrent=kind == "many"))
            rates[kind].append(rate)
            texts.setdefault(kind, out)
    one, many = statistics.median(rates["one"]), statistics.median(rates["many"])
    return {"clients": clients, "tokens": tokens, "rounds": rounds, "one_client_tok_s": round(one, 1),
            "many_clients_tok_s": round(many, 1), "ratio": round(many / one, 2),
            "ratio_per_round": [round(m / o, 2) for o, m in zip(rates["one"], rates["many"])],
            "same_text": texts["one"] == texts["many"],      # batching changes no greedy token
            "load": [round(x, 1) for x in os.getloadavg()]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128, help="completion tokens per client (end tokens ignored)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="the server's intra-op threads")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    log = Path(tempfile.mkdtemp(prefix="myllm-serve-bench-")) / "server.log"
    proc, url = start_server(args.config, args.checkpoint, args.overrides, args.threads, args.clients, log)
    try:
        result = measure(url, args.clients, args.tokens, args.rounds)
    finally:
        stop_server(proc)
    print(f"one client {result['one_client_tok_s']} tok/s; {args.clients} concurrent clients "
          f"{result['many_clients_tok_s']} tok/s aggregate = {result['ratio']}x (per round {result['ratio_per_round']});"
          f" {args.tokens} tokens each, {args.rounds} rounds, medians; client 0's text identical alone and batched:"
          f" {result['same_text']}; load {result['load']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

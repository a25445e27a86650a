#!/usr/bin/env python
"""Start `myllm serve` on a free port, ask it one question with the official `openai` client, stop it.

    python examples/ask_server.py configs/tiny.yaml runs/grpo_tiny/checkpoints "What is 7 + 5?"

What the quickstart runs to show the last link of the chain: the server speaks the OpenAI API, so any client
that speaks it works unchanged. The server is stopped with SIGTERM (it drains the request in flight first).
"""

import re
import signal
import subprocess
import sys
import time


def main(argv) -> int:
    if len(argv) != 3:
        print("usage: ask_server.py CONFIG CHECKPOINT QUESTION", file=sys.stderr)
        return 2
    config, checkpoint, question = argv
    server = subprocess.Popen([sys.executable, "-m", "myllm_mc.cli", "serve", config, "--checkpoint", checkpoint,
                               "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, deadline = None, time.monotonic() + 300
        for line in server.stdout:                                 # the ready line names the port it bound
            found = re.search(r"on (http://[\d.]+:\d+)", line)
            if found:
                url = found.group(1)
                print(line.rstrip())
                break
            if time.monotonic() > deadline:
                break
        if url is None:
            print("ask_server: the server did not come up — see the lines above", file=sys.stderr)
            return 1
        from openai import OpenAI

        client = OpenAI(base_url=f"{url}/v1", api_key="none")
        model = client.models.list().data[0].id
        started = time.perf_counter()
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                               max_tokens=24, temperature=0)
        seconds = time.perf_counter() - started
        print(f"openai client → {url}/v1 model {model!r}: {question!r} → {reply.choices[0].message.content!r} "
              f"({reply.usage.completion_tokens} tokens, finish {reply.choices[0].finish_reason}, {seconds:.2f} s)")
        return 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            tail, _ = server.communicate(timeout=60)
            last = [line for line in tail.splitlines() if line.startswith("stopped")]
            if last:
                print(last[-1])
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

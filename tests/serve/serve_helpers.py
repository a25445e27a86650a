"""Helpers for the serving tests: train the tiny model, run `myllm serve` as users do (its own process group,
output to a file, the port read from its ready line), stop it with SIGTERM."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "A small robot learned to paint the sky with bright orange colors.",
    "Every morning the baker opens the shop and sells warm bread to the town.",
    "Rain falls softly on the green hills while the farmers rest inside.",
    "The old library keeps thousands of books about stars and distant planets.",
    "Children play football in the park until the sun goes down.",
    "My favourite song is about a sailor who finds a hidden island.",
    "Water boils at one hundred degrees at sea level on a calm day.",
]
MODEL = ["model.num_layers=2", "model.hidden_size=64", "model.num_attention_heads=4", "model.num_query_groups=2",
         "model.kv_channels=16", "model.ffn_hidden_size=192", "model.vocab_size=512", "model.seq_length=64"]
API_KEY = "test-key"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))


def train_tiny_chat_model(root: Path):
    """A byte-level BPE (512) and a 2-layer, 64-wide model trained 150 steps on the eight sentences, shuffled
    into 400 documents: loss falls to ~0.2, so greedy decoding continues any sentence start word for word."""
    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.data.tokenizer_training import train_tokenizer

    rng = random.Random(0)
    corpus = root / "corpus.jsonl"
    with corpus.open("w") as f:
        for _ in range(400):
            order = SENTENCES[:]
            rng.shuffle(order)
            f.write(json.dumps({"text": " ".join(order)}) + "\n")
    train_tokenizer([corpus], 512, root / "tok")
    preprocess([corpus], str(root / "corpus"), str(root / "tok" / "tokenizer.json"), workers=0, progress=False)
    overrides = [f"data.tokenizer={root / 'tok' / 'tokenizer.json'}", *MODEL]
    train = [*overrides, f"data.blend=[{root / 'corpus_text_document'}]", f"data.cache_dir={root / 'cache'}",
             "data.split=100,0,0", "training.micro_batch_size=8", "training.global_batch_size=8",
             "training.steps=150", "training.eval_interval=0", "schedule.warmup_steps=10", "optimizer.lr=1e-2",
             "logging.log_interval=50", "logging.tensorboard=false", "logging.plot=false",
             f"logging.dir={root / 'run'}", f"checkpoint.dir={root / 'ckpt'}", "checkpoint.save_interval=150"]
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "train", "configs/tiny.yaml", "--set", *train],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    loss = float(re.search(r"last loss ([0-9.]+)", done.stdout).group(1))
    assert loss < 0.5, f"the tiny model did not learn its sentences (loss {loss})"
    return overrides, root / "ckpt"


class ServerProcess:
    """`myllm serve configs/tiny.yaml --checkpoint DIR --port 0 ...` in its own process group."""

    def __init__(self, overrides, checkpoint, log_dir: Path, *flags: str, ready_timeout: float = 180):
        self.command = [sys.executable, "-m", "myllm_mc.cli", "serve", "configs/tiny.yaml", "--checkpoint",
                        str(checkpoint), "--port", "0", *flags, "--set", *overrides]
        self.log_path = Path(log_dir) / "server.log"
        self.ready_timeout = ready_timeout
        self.proc = None
        self.url = None

    def __enter__(self) -> "ServerProcess":
        self.log = self.log_path.open("w")
        # one intra-op thread: the test process and its clients share the 2 CI cores with the server, and
        # OpenMP threads that spin on a busy machine make a tiny model's steps slower and noisier, not faster
        env = dict(_env(), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(self.command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.ready_timeout
        while self.url is None:
            match = re.search(r"on (http://[0-9.]+:\d+)", self.output())
            if match:
                self.url = match.group(1)
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"myllm serve did not start:\n{self.output()[-3000:]}")
            else:
                time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, key: str | None = API_KEY, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, wait for the drain; the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if getattr(self, "log", None):
            self.log.close()

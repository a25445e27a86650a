"""`myllm generate` (JSONL in, JSONL out, the end-of-run numbers line, one-line errors) and `myllm chat` driven in
a real pseudo-terminal: two turns, /reset, Ctrl-C in the middle of a reply."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _myllm(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "myllm_mc.cli", *args], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_generate_jsonl_in_jsonl_out_with_the_numbers_line(trained, generator, corpus_prompts, tmp_path):
    tok = generator.tokenizer
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "prompt": tok.decode(corpus_prompts[2])},
        {"id": "b", "messages": [{"role": "user", "content": "Tell me a story."}], "max_new_tokens": 5},
        {"id": "c", "prompt": tok.decode(corpus_prompts[0]), "max_new_tokens": 4, "stop": ["\x00"]}]) + "\n")
    out = tmp_path / "out.jsonl"
    done = _myllm("generate", "configs/tiny.yaml", "--set", *trained["overrides"], "--checkpoint",
                  trained["checkpoint"], "--prompts", str(prompts), "--output", str(out), "--temperature", "0",
                  "--max-new-tokens", "12")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    expected = generator.generate([tok.encode(tok.decode(corpus_prompts[2]))],
                                  __import__("myllm_mc.infer", fromlist=["SamplingParams"]).SamplingParams(
                                      temperature=0, max_new_tokens=12))[0]
    assert rows[0]["token_ids"] == expected.token_ids and rows[0]["text"] == expected.text
    assert rows[1]["prompt_tokens"] == len(tok.encode_chat([{"role": "user", "content": "Tell me a story."}],
                                                           add_generation_prompt=True)[0])
    assert rows[1]["completion_tokens"] <= 5 and rows[2]["completion_tokens"] <= 4
    assert all(r["tokens_per_s"] >= 0 and r["finish_reason"] in ("stop", "length") for r in rows)
    last = done.stderr.strip().splitlines()[-1]
    found = re.search(r"prefill [\d,]+ tok/s · decode [\d.,]+ tok/s · first token [\d,]+ ms · KV cache ([\d.]+) MiB"
                      r" float32 allocated \(planner ([\d.]+) MiB\) · decode bound [\d.,]+ tok/s \(measured CPU copy", last)
    assert found, last
    # sized to the three requests (3 rows, one 64-slot block), not to 8 rows × the 128-token context (1.00 MiB)
    assert found.group(1) == found.group(2) == "0.19", last


@pytest.mark.parametrize("args, words", [
    (["--prompt", ""], "empty prompt"),
    (["--prompt", "word " * 400], "does not fit the 128-token context"),
    (["--prompt", "hi", "--checkpoint", "/nonexistent/ckpt"], "does not exist"),
])
def test_generate_errors_are_one_line_and_exit_2(trained, args, words):
    base = ["generate", "configs/tiny.yaml", "--set", *trained["overrides"]]
    if "--checkpoint" not in args:
        base += ["--checkpoint", trained["checkpoint"]]
    done = _myllm(*base, *args, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "fix:" in lines[0], done.stderr


def test_chat_in_a_terminal_two_turns_reset_and_ctrl_c(trained):
    pexpect = pytest.importorskip("pexpect", reason="pexpect drives the pty (setup.py extra 'test')")
    # a 512-token context (RoPE: the weights do not depend on it) so that two turns of random-weight text,
    # which re-encodes into more tokens than were generated, still fit without dropping the first turn
    child = pexpect.spawn(sys.executable, ["-m", "myllm_mc.cli", "chat", "configs/tiny.yaml", "--set",
                                           *trained["overrides"], "model.seq_length=512",
                                           "--checkpoint", trained["checkpoint"],
                                           "--temperature", "0", "--max-new-tokens", "40", "--ignore-eos"],
                          cwd=str(REPO), env=_env(), encoding="utf-8", timeout=240, dimensions=(40, 200))
    child.delaybeforesend = None
    try:
        child.expect("chat ready")
        contexts = []
        for message in ["Hello there.", "What is a story?"]:
            child.expect_exact("you> ")
            child.sendline(message)
            child.expect(r"\[40 tokens · [\d.]+ tok/s · first token \d+ ms · context (\d+)/512 · (\d+) cached\]")
            contexts.append(int(child.match.group(1)))
            assert int(child.match.group(2)) < contexts[-1]      # prefix-cache hits, always leaving one token
        assert contexts[1] > contexts[0] + 20          # the second prompt carries the first turn (40-token reply)
        child.expect_exact("you> ")
        child.sendline("/reset")
        child.expect_exact("(history cleared)")
        child.expect_exact("you> ")
        child.sendline("Hello there.")
        child.expect_exact("assistant> ")
        child.expect(r"\S")                             # the reply has started streaming
        child.sendintr()                                # Ctrl-C: stops the reply, not the program
        child.expect_exact(" [stopped]")
        child.expect_exact("you> ")
        child.sendline("Hello there.")                  # history after reset + stopped turn: still alive
        child.expect(r"context (\d+)/512 · \d+ cached\]")
        assert int(child.match.group(1)) > contexts[0]
        child.expect_exact("you> ")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0

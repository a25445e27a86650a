"""Results files of `myllm generate --output` and `myllm eval --out` (#29, second hostile pass).

`generate --output` opened the path with "w" once the model had loaded: the previous results were gone from that
moment, a run killed while decoding left a shorter file of valid lines (it looks finished), and a second run on
the same file wrote over the first. It is now written to a temporary of the run and renamed at the end under
`<output>.lock` (`locking.NewOutput(replace=True)`). `--output` may not be the config, the tokenizer or lie in the
checkpoint; `eval --out docs.jsonl --text docs.jsonl` replaced the text by the report and is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from tests.reliability.faults import assert_short, finish, myllm

PREVIOUS = "".join(json.dumps({"text": f"previous result {i}"}) + "\n" for i in range(8))


def generate_args(tiny_checkpoint, prompts, output, *extra):
    return ["generate", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint",
            str(tiny_checkpoint["checkpoint"]), "--prompts", str(prompts), "--output", str(output), *extra]


def write_prompts(path, n=8, tokens=100):
    path.write_text("".join(json.dumps({"prompt": f"Story {i}: once upon a time", "max_new_tokens": tokens,
                                        "temperature": 0}) + "\n" for i in range(n)))
    return path


def read_until(proc, needle: str, timeout: float = 240) -> str:
    """The merged output of `proc` until `needle` appears (one character at a time: progress lines end in \\r)."""
    seen, deadline = "", time.time() + timeout
    while needle not in seen:
        char = proc.stdout.read(1)
        assert char and time.time() < deadline, f"{needle!r} never came:\n{seen[-3000:]}"
        seen += char
    return seen


@pytest.mark.slow
def test_a_killed_generate_keeps_the_previous_results_and_a_second_writer_is_refused(tiny_checkpoint, tmp_path):
    prompts, output = write_prompts(tmp_path / "prompts.jsonl", n=200), tmp_path / "results.jsonl"
    output.write_text(PREVIOUS)
    first = myllm(generate_args(tiny_checkpoint, prompts, output, "--batch-size", "1"))
    try:
        read_until(first, "1/200 requests")                  # decoding, the output open (before: truncated)
        os.killpg(first.pid, signal.SIGSTOP)                 # held there (~20,000 tokens to go): a live writer
        second = myllm(generate_args(tiny_checkpoint, prompts, output))
        out = finish(second, timeout=300)
        assert second.returncode == 2, out[-3000:]
        assert_short(out, f"--output {output} is in use by another run (PID {first.pid}", most=1)
        assert output.read_text() == PREVIOUS
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert output.read_text() == PREVIOUS                    # killed mid-run: the previous results whole
    rerun = myllm(generate_args(tiny_checkpoint, prompts, output, "--batch-size", "8"))
    out = finish(rerun, timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    assert "taking over the lock" in out
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 200 and all(row["text"] for row in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prompts.jsonl", "results.jsonl"]


@pytest.mark.parametrize("which", ["config", "tokenizer", "checkpoint"])
def test_an_output_over_an_input_or_in_the_checkpoint_is_refused_before_the_model_loads(tiny_checkpoint, tmp_path,
                                                                                         which):
    prompts = write_prompts(tmp_path / "prompts.jsonl", n=1, tokens=4)
    checkpoint = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint["checkpoint"], checkpoint)
    config = tmp_path / "config.yaml"
    shutil.copyfile(tiny_checkpoint["config"], config)
    tokenizer = tmp_path / "tokenizer.json"          # a copy: the fixture's is shared
    shutil.copyfile(next(o.split("=", 1)[1] for o in tiny_checkpoint["overrides"] if o.startswith("data.tok")),
                    tokenizer)
    target = {"config": config, "tokenizer": tokenizer, "checkpoint": checkpoint / "step_0000001" / "common.pt"}[which]
    before = target.read_bytes()
    args = ["generate", str(config), "--set", *tiny_checkpoint["overrides"], f"data.tokenizer={tokenizer}",
            "--checkpoint", str(checkpoint), "--prompts", str(prompts), "--output", str(target)]
    proc = myllm(args)
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    needle = {"config": "is the config file", "tokenizer": "is the data.tokenizer file",
              "checkpoint": "lies in the checkpoint"}[which]
    assert_short(out, needle, "fix: write the results to another", most=1)
    assert "prefill" not in out and target.read_bytes() == before


def test_eval_out_that_is_the_text_it_scores_is_refused(tiny_checkpoint, tmp_path):
    text = tmp_path / "docs.jsonl"
    text.write_text(json.dumps({"text": "Once upon a time there was a king."}) + "\n")
    before = text.read_bytes()
    proc = myllm(["eval", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint",
                  str(tiny_checkpoint["checkpoint"]), "--text", str(text), "--out", str(text)])
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    assert_short(out, f"--out {text} is the --text file", "fix: write the report to another file", most=1)
    assert text.read_bytes() == before

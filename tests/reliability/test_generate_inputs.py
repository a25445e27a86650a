"""`myllm generate --prompts` refuses, before the model loads, an output that is its input (it was overwritten
without a word), an output under a regular file (a NotADirectoryError traceback), and request keys it does not
know (`max_new_token`, `temprature`: they were ignored and the defaults used, while the server answers 422)."""

from __future__ import annotations

import json
import os

import pytest

from tests.reliability.faults import assert_short, finish, myllm

REQUESTS = [{"prompt": "Once upon a time", "max_new_tokens": 4}, {"prompt": "It is a truth", "temperature": 0}]


def generate(tiny_checkpoint, *extra):
    proc = myllm(["generate", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint",
                  str(tiny_checkpoint["checkpoint"]), *extra])
    out = finish(proc, timeout=300)
    return proc.returncode, out


def write_requests(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink"])
def test_an_output_that_is_the_prompts_file_is_refused_and_the_prompts_kept(tiny_checkpoint, tmp_path, how):
    prompts = write_requests(tmp_path / "in.jsonl", REQUESTS)
    before = prompts.read_bytes()
    output = {"same path": prompts, "hard link": tmp_path / "link.jsonl", "symlink": tmp_path / "sym.jsonl"}[how]
    if how == "hard link":
        os.link(prompts, output)
    elif how == "symlink":
        output.symlink_to(prompts)
    code, out = generate(tiny_checkpoint, "--prompts", str(prompts), "--output", str(output))
    assert code == 2, out[-3000:]
    assert_short(out, f"--output {output} is the --prompts file", "fix: write the results to another file", most=1)
    assert "prefill" not in out and prompts.read_bytes() == before


def test_an_output_under_a_regular_file_is_refused_in_one_line(tiny_checkpoint, tmp_path):
    prompts = write_requests(tmp_path / "in.jsonl", REQUESTS)
    (tmp_path / "notes.txt").write_text("my notes\n")
    code, out = generate(tiny_checkpoint, "--prompts", str(prompts), "--output", str(tmp_path / "notes.txt" / "o.jsonl"))
    assert code == 2, out[-3000:]
    assert_short(out, f"{tmp_path / 'notes.txt'} is a file, not a directory", most=1)
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"


@pytest.mark.parametrize("key, hint", [
    ("max_new_token", "did you mean 'max_new_tokens'?"),
    ("temprature", "did you mean 'temperature'?"),
    ("bogus", "the keys are prompt, messages, id, max_new_tokens"),
])
def test_an_unknown_request_key_is_refused_with_its_line_and_a_suggestion(tiny_checkpoint, tmp_path, key, hint):
    prompts = write_requests(tmp_path / "in.jsonl", REQUESTS + [{"prompt": "The", key: 3}])
    code, out = generate(tiny_checkpoint, "--prompts", str(prompts), "--output", str(tmp_path / "out.jsonl"))
    assert code == 2, out[-3000:]
    assert_short(out, f"{prompts}:3: unknown key '{key}' — fix: {hint}", most=1)
    assert "prefill" not in out and not (tmp_path / "out.jsonl").exists()

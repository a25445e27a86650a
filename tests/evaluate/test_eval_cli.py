"""`myllm eval`: bad input is one line + exit 2 before any model loads; on two tiny checkpoints it writes the
JSON report and prints the comparison table and the summary line."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_model_load(monkeypatch):
    import myllm_mc.evaluate.cli as eval_cli

    def refuse(*_):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(eval_cli, "load_model_for_inference", refuse)    # where `myllm eval` looks it up


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case, words", [
    ("missing_text", "text file"), ("empty_text", "no text to score"), ("unknown_task", "unknown task arithmatic"),
    ("missing_checkpoint", "does not exist"), ("nothing", "nothing to evaluate"), ("no_checkpoint", "no checkpoint"),
    ("bad_mc", "no valid multiple-choice record"), ("missing_data", "not found"), ("two_procs", "one process"),
    ("bad_limit", "--limit 0"),
])
def test_bad_input_is_one_line_and_exit_2_before_loading(eval_model, tmp_path, capsys, no_model_load, case, words):
    from myllm_mc.cli import main

    base = ["eval", "configs/tiny.yaml", "--set", *eval_model["overrides"]]
    ckpt = ["--checkpoint", eval_model["checkpoint"]]
    args = {
        "missing_text": ckpt + ["--text", str(tmp_path / "nope.txt")],
        "empty_text": ckpt + ["--text", _write(tmp_path / "empty.txt", " \n")],
        "unknown_task": ckpt + ["--tasks", "arithmatic"],
        "missing_checkpoint": ["--checkpoint", str(tmp_path / "no-ckpt"), "--tasks", "all"],
        "nothing": ckpt,
        "no_checkpoint": ["--tasks", "all"],
        "bad_mc": ckpt + ["--mc", _write(tmp_path / "mc.jsonl", '{"context": "a", "choices": ["b"], "gold": 0}\n')],
        "missing_data": ckpt + ["--data", str(tmp_path / "corpus_text_document")],
        "two_procs": ckpt + ["--tasks", "all", "--nproc-per-node", "2"],
        "bad_limit": ckpt + ["--tasks", "all", "--limit", "0"],
    }[case]
    assert main(base + args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "fix:" in lines[0], lines


def test_eval_two_checkpoints_writes_the_report_and_the_table(eval_model, sample_texts, tmp_path):
    path, docs = sample_texts
    mc = tmp_path / "mc.jsonl"
    mc.write_text('{"context": "The", "choices": [" king", " queen", " river"], "gold": 0}\n'
                  '{"context": "Once upon a", "choices": [" time", " tree"], "gold": 0}\nbroken\n')
    out = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "2")
    done = subprocess.run(
        [sys.executable, "-m", "myllm_mc.cli", "eval", "configs/tiny.yaml", "--set", *eval_model["overrides"],
         "--checkpoint", eval_model["checkpoint"], "--compare", eval_model["checkpoint_b"], "--text", str(path),
         "--tasks", "arithmetic,format", "--limit", "2", "--max-new-tokens", "4", "--mc", str(mc), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    a, b = report["checkpoints"]
    assert [a["checkpoint"], b["checkpoint"]] == [eval_model["checkpoint"], eval_model["checkpoint_b"]]
    assert a["resolved"].endswith("step_0000001")
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    for r in (a, b):
        ppl = r["perplexity"]
        assert ppl["nbytes"] == nbytes and ppl["documents"] == 6 and ppl["seq_length"] == 128
        assert ppl["bits_per_byte"] == ppl["nll_sum"] / math.log(2) / nbytes
        assert math.isclose(ppl["perplexity"], math.exp(ppl["nll_sum"] / ppl["tokens"]), rel_tol=1e-12)
        assert r["tasks"]["all"]["total"] == 4 and r["tasks"]["arithmetic"]["total"] == 2
        assert r["multiple_choice"]["questions"] == 2 and r["multiple_choice"]["skipped"] == {"malformed_json": 1}
    assert a["perplexity"]["tokens"] == b["perplexity"]["tokens"]
    assert a["perplexity"]["nll_sum"] != b["perplexity"]["nll_sum"]          # two different models
    table = done.stdout.strip().splitlines()
    labels = ["/".join(Path(c).parts[-2:]) for c in (eval_model["checkpoint"], eval_model["checkpoint_b"])]
    assert table[0].split() == ["metric", *labels]
    rows = {re.split(r"\s{2,}", line.strip())[0]: re.split(r"\s{2,}", line.strip())[1:] for line in table[2:]}
    assert {"perplexity", "bits per byte", "task accuracy (all)", "arithmetic", "format", "MC accuracy",
            "MC accuracy (byte-normalised)"} <= set(rows)
    assert rows["perplexity"] == [f"{a['perplexity']['perplexity']:.3f}", f"{b['perplexity']['perplexity']:.3f}"]
    assert rows["MC questions"] == ["2", "2"]
    assert "[1] perplexity windows: 10/10" in done.stderr and "[2] task prompts: 4/4" in done.stderr   # progress
    assert "multiple choice: 2 questions from" in done.stderr
    assert "skipped 1 malformed (1 malformed_json)" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("eval: 2 checkpoint(s) in ") and f"report {out}" in last
    print("\n".join(table))
    print(last)

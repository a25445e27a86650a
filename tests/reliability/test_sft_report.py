"""Fault-injection table, fine-tuning data (issue #29): a conversation longer than the sequence is cut to fit, and
the packing report counts what is trained on — `myllm finetune sft` in a fresh interpreter, its report checked
against a count made here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from myllm_mc.data.tokenizer import Tokenizer

from .conftest import corpus_texts
from .faults import REPO

SEQ = 64


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["true", "false"])
def test_the_packing_report_counts_the_tokens_trained_on(small_data, tmp_path, packing):
    tokenizer = Tokenizer(small_data["tokenizer"])
    long_text = corpus_texts(1, 4000)[0]                        # ~thousands of tokens: far over one sequence
    records = [{"messages": [{"role": "user", "content": long_text}, {"role": "assistant", "content": "ok"}]}]
    records += [{"messages": [{"role": "user", "content": f"What is {n} + {n}?"},
                              {"role": "assistant", "content": str(2 * n)}]} for n in range(12)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    lengths = [len(tokenizer.encode_chat(r["messages"])[0]) for r in records]
    assert lengths[0] > 3 * SEQ
    trained = sum(min(n - 1, SEQ) for n in lengths)              # a sequence holds SEQ inputs of a conversation

    overrides = [o for o in small_data["overrides"] if not o.startswith(("data.blend", "data.split"))] + [
        f"align.train=[{path}]", "align.valid=[]", "align.epochs=null", f"align.packing={packing}",
        "training.eval_tasks=[]", "training.steps=1", f"checkpoint.dir={tmp_path / 'ckpt'}", "checkpoint.init_from=null",
        f"logging.dir={tmp_path / 'run'}", f"model.seq_length={SEQ}"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "finetune", "sft", "configs/sft_tiny.yaml",
                           "--set", *overrides], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "sft train: 13 of 13 records kept, 1 truncated to the sequence length" in out, out[-3000:]
    report = re.search(r"sft: 13 conversations, ([\d,]+) tokens, ([\d,]+) sequences of 64 per epoch "
                       r"\((?:packed|padded), (\d+)% real tokens\)", out)
    assert report, out[-3000:]
    tokens, sequences, share = (int(g.replace(",", "")) for g in report.groups())
    assert tokens == trained
    if packing == "false":
        assert sequences == len(records)
    assert share == round(100 * trained / (sequences * SEQ)) and share <= 100

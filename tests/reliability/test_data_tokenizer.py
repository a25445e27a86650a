"""A dataset read with a tokenizer that did not make it (#29, second hostile pass). Its ids mean other strings: a
dataset from another tokenizer of the same size trained and scored without a word (eval --data gave a perplexity of
another text, exit 0); one from a bigger tokenizer passed `config check` and stopped the run with an IndexError
traceback (on GPU a device assert; under tensor parallelism megatron masks such ids to zero). Preprocessing now
writes `PREFIX.tokenizer.json` (SHA-256, size) with the pair; `config check`/`train` and `eval --data` refuse another
tokenizer in one line, and scan an unrecorded dataset for ids the tokenizer does not have."""

from __future__ import annotations

import json

import pytest

from myllm_mc.data.preprocess import preprocess
from myllm_mc.data.tokenizer_training import train_tokenizer
from tests.reliability.faults import assert_short, finish, myllm


@pytest.fixture(scope="module")
def other_data(small_data, tmp_path_factory):
    """The small corpus preprocessed with a second 512-entry tokenizer (same size, other merges) and a 1,024 one."""
    root = tmp_path_factory.mktemp("other-tokenizers")
    texts = [json.loads(line)["text"] for line in small_data["jsonl"].read_text().splitlines()]
    other = root / "other.jsonl"                           # other text → other merges
    other.write_text("".join(json.dumps({"text": t[::-1]}) + "\n" for t in texts))
    found = {}
    for name, size in (("same_size", 512), ("bigger", 1024)):
        train_tokenizer([other], size, root / name)
        preprocess([small_data["jsonl"]], str(root / name / "docs"), str(root / name / "tokenizer.json"), workers=0,
                   progress=False)
        found[name] = root / name / "docs_text_document"
    (root / "bigger" / "docs_text_document.tokenizer.json").unlink(missing_ok=True)   # as before the record existed
    return found


def test_preprocessing_records_its_tokenizer(small_data):
    record = json.loads((small_data["root"] / "corpus_text_document.tokenizer.json").read_text())
    assert record["vocab_size"] == 512 and len(record["sha256"]) == 64


@pytest.mark.parametrize("which, needle", [("same_size", "was tokenized with another tokenizer"),
                                           ("bigger", "holds token id")])
def test_config_check_refuses_a_dataset_of_another_tokenizer(small_data, other_data, which, needle):
    overrides = [o for o in small_data["overrides"] if not o.startswith("data.blend")]
    proc = myllm(["config", "check", "configs/tiny.yaml", "--set", *overrides, f"data.blend=[{other_data[which]}]",
                  f"checkpoint.dir={small_data['root'] / 'never'}"])
    out = finish(proc, timeout=120)
    assert proc.returncode == 2, out[-3000:]
    assert_short(out, "config error: data.blend:", needle, "fix: preprocess it again with", most=1)
    proc = myllm(["config", "check", "configs/tiny.yaml", "--set", *small_data["overrides"],
                  f"checkpoint.dir={small_data['root'] / 'never'}"])
    out = finish(proc, timeout=120)
    assert proc.returncode == 0 and "ok:" in out, out[-3000:]         # its own dataset still passes


def test_eval_data_of_another_tokenizer_is_refused(tiny_checkpoint, small_data, other_data):
    tokenizer = next(o for o in tiny_checkpoint["overrides"] if o.startswith("data.tokenizer="))
    # the 1,024-entry fixture model's tokenizer against data made by the other 512-entry one
    proc = myllm(["eval", "configs/tiny.yaml", "--set", *tiny_checkpoint["overrides"], "--checkpoint",
                  str(tiny_checkpoint["checkpoint"]), "--data", str(other_data["same_size"])])
    out = finish(proc, timeout=300)
    assert proc.returncode == 2, out[-3000:]
    assert_short(out, "was tokenized with another tokenizer", tokenizer.split("=", 1)[1], most=1)
    assert "perplexity" not in out

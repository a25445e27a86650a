"""A small tokenizer (1,024 entries) trained on the shipped SFT task texts: enough for chat rendering tests
without the 8k corpus tokenizer."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def chat_tokenizer(tmp_path_factory):
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.data.tokenizer_training import train_tokenizer

    root = tmp_path_factory.mktemp("chat-tokenizer")
    texts = root / "texts.jsonl"
    with open(texts, "w") as out:
        for path in sorted((REPO / "data" / "tasks" / "sft").glob("*.train.jsonl")):
            for line in open(path):
                for message in json.loads(line)["messages"]:
                    out.write(json.dumps({"text": message["content"]}) + "\n")
    train_tokenizer([texts], 1024, root / "tok")
    return Tokenizer(root / "tok" / "tokenizer.json")


@pytest.fixture(scope="session")
def runs(tiny_data, tmp_path_factory):
    """Every fine-tuning run of tests/align/workers/finetune.py (SFT, DPO, GRPO), in two torchrun launches:
    (rank 0's results of the 1-process reference, every rank's results of the 2-process layouts)."""
    from tests.helpers.torchrun import run_torchrun

    work = tmp_path_factory.mktemp("finetune")
    args = ["--work", str(work), "--overrides", json.dumps(tiny_data)]
    reference = run_torchrun("tests/align/workers/finetune.py", 1, ["--mode", "reference", *args], timeout=1500)
    layouts = run_torchrun("tests/align/workers/finetune.py", 2, ["--mode", "layouts", *args], timeout=1200)
    return reference[0], layouts

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

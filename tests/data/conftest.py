"""Shared fixtures: the shipped corpus and a small tokenizer trained on it once."""

from __future__ import annotations

import pytest
from data_helpers import load_corpus, write_jsonl


@pytest.fixture(scope="session")
def corpus_docs():
    return load_corpus()


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory, corpus_docs):
    """A 2,048-entry tokenizer trained on a slice of the corpus (speed; properties don't depend on size)."""
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.data.tokenizer_training import train_tokenizer

    tmp = tmp_path_factory.mktemp("tok")
    sample = tmp / "sample.jsonl"
    write_jsonl(sample, corpus_docs[::8])
    train_tokenizer([sample], 2048, tmp / "out")
    return Tokenizer(tmp / "out" / "tokenizer.json")



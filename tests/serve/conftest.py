"""Fixtures of the serving tests: a tiny model that memorised eight sentences (so greedy text is known in advance)
and a running `myllm serve` process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.serve.serve_helpers import MODEL, ServerProcess, train_tiny_chat_model


@pytest.fixture(scope="session")
def serve_model(tmp_path_factory):
    """(config overrides, checkpoint dir) of a 2-layer model that memorised eight sentences (~40 s on 2 cores).
    MYLLM_TEST_SERVE_MODEL=DIR keeps it in DIR and reuses it on the next run (for working on these tests)."""
    keep = os.environ.get("MYLLM_TEST_SERVE_MODEL")
    if keep and (Path(keep) / "ckpt" / "latest").exists():
        return [f"data.tokenizer={Path(keep) / 'tok' / 'tokenizer.json'}", *MODEL], Path(keep) / "ckpt"
    root = Path(keep) if keep else tmp_path_factory.mktemp("serve-model")
    root.mkdir(parents=True, exist_ok=True)
    return train_tiny_chat_model(root)


@pytest.fixture(scope="session")
def api_server(serve_model, tmp_path_factory):
    """One server for the client, bad-input and browser tests: API key on, a small body limit, 8 rows per step."""
    overrides, checkpoint = serve_model
    server = ServerProcess(overrides, checkpoint, tmp_path_factory.mktemp("serve-log"),
                           "--api-key", "test-key", "--max-body-bytes", "65536", "--max-concurrent", "16",
                           "--max-batch", "8", "--max-tokens-limit", "48")
    with server:
        yield server

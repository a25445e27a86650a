"""Fixtures of the inference tests: one in-test pretrained tiny model per session (tests/infer/tiny_model.py) and a
generator on it at TP=1; and for the serving tests a tiny model that memorised eight sentences (so greedy text is
known in advance) and a running `myllm serve` process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.infer.serve_helpers import MODEL, ServerProcess, train_tiny_chat_model


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Built fresh per session; MYLLM_TEST_INFER_MODEL=DIR reuses one built there before (info.json), for
    iterating on these tests without retraining."""
    import json
    import os
    from pathlib import Path

    from tests.infer.tiny_model import build

    reuse = os.environ.get("MYLLM_TEST_INFER_MODEL")
    if reuse and (Path(reuse) / "info.json").is_file():
        return json.loads((Path(reuse) / "info.json").read_text())
    info = build(tmp_path_factory.mktemp("infer-model"))
    return info


@pytest.fixture(scope="session")
def generator(trained):
    from myllm_mc.infer import inference_config, load_generator

    cfg = inference_config("configs/tiny.yaml", trained["overrides"], world_size=1)
    return load_generator(cfg, trained["checkpoint"], max_batch_size=4, seed=7)


@pytest.fixture(scope="session")
def corpus_prompts(trained, generator):
    """Ragged prompts (5, 17 and 40 tokens) cut from the corpus text."""
    import json
    from pathlib import Path

    texts = [json.loads(line)["text"] for line in Path(trained["slice"]).read_text()
             .splitlines()[:3]]
    ids = [generator.tokenizer.encode(t) for t in texts]
    return [ids[0][:5], ids[1][:17], ids[2][:40]]



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

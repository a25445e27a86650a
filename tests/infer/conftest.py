"""Fixtures of the inference tests: one in-test pretrained tiny model per session (tests/infer/tiny_model.py) and a
generator on it at TP=1."""

from __future__ import annotations

import pytest


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

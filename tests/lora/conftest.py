"""A base model for the LoRA tests: a 1,024-entry tokenizer trained on the shipped SFT task texts and a 2-layer,
128-wide model (GQA 4 heads / 2 groups, init std 0.1 so adapters and attention are far from trivial, fp32) saved
as a bare model checkpoint; and one LoRA SFT run on it, in this process, that several tests read."""

import json

import pytest
from lora_helpers import MODEL, REPO, ParameterWatch, sft_config


@pytest.fixture(scope="session")
def lora_base(tmp_path_factory):
    """{"root", "model": overrides incl. the tokenizer, "base": a bare model save}."""
    from myllm_mc.checkpoint import save_model
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer_training import train_tokenizer
    from myllm_mc.model import build_model
    from myllm_mc.parallel.state import init_distributed

    root = tmp_path_factory.mktemp("lora")
    with open(root / "texts.jsonl", "w") as out:
        for path in sorted((REPO / "data" / "tasks" / "sft").glob("*.train.jsonl")):
            for line in open(path):
                for message in json.loads(line)["messages"]:
                    out.write(json.dumps({"text": message["content"]}) + "\n")
    train_tokenizer([root / "texts.jsonl"], 1024, root / "tok")
    model = MODEL + [f"data.tokenizer={root / 'tok' / 'tokenizer.json'}"]
    cfg = load(REPO / "configs" / "sft_tiny.yaml", model, world_size=1)
    init_distributed(cfg, seed=5)
    save_model(build_model(cfg), str(root / "base"))
    return {"root": root, "model": model, "base": root / "base"}


@pytest.fixture(scope="session")
def sft_run(lora_base):
    """4 LoRA SFT steps saved at 2 and 4, the frozen parameters' digest at start and end, the adapters' at the end."""
    from myllm_mc.align.sft import run_sft

    watch = ParameterWatch()
    cfg = sft_config(lora_base, "sft", "training.steps=4", "checkpoint.save_interval=2")
    result = run_sft(cfg, extra_callbacks=[watch])
    return {"cfg": cfg, "result": result, "watch": watch, "dir": lora_base["root"] / "sft" / "ckpt"}



"""A config or tokenizer that is not the checkpoint's (#29, second hostile pass): `--set model.rotary_base=500000`,
`model.norm_epsilon=0.1` or another tokenizer of a size the model holds used to load and answer in other words
(generate, eval) or write an export with the wrong RoPE base or tokenizer (export hf|gguf), all exit 0; a changed
kv_channels was a 40-line CheckpointingException. Every reader now compares the config with what the checkpoint
recorded (`compat.check_reading`: model shape, `model_config`, tokenizer SHA-256) and refuses in one line, exit 2,
before a model loads and before anything is written."""

from __future__ import annotations

import json
import shutil

import pytest

from myllm_mc.checkpoint import compat
from myllm_mc.config import load
from tests.reliability.faults import assert_short, finish, myllm


@pytest.fixture
def recorded(tiny_checkpoint, tmp_path):
    """The tiny checkpoint with the meta training writes (`compat.record`: shape, model_config, tokenizer)."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_checkpoint["checkpoint"], root)
    step = root / "step_0000001"
    meta = json.loads((step / "myllm_meta.json").read_text())
    meta.update(compat.record(load("configs/tiny.yaml", tiny_checkpoint["overrides"], world_size=1)))
    (step / "myllm_meta.json").write_text(json.dumps(meta))
    return {"checkpoint": root, "overrides": tiny_checkpoint["overrides"]}


def test_training_records_what_the_weights_compute_beside_the_shape(tiny_checkpoint):
    cfg = load("configs/tiny.yaml", tiny_checkpoint["overrides"], world_size=1)
    record = compat.record(cfg)
    assert record["model_config"]["rotary_base"] == 10000 and record["model_config"]["norm_epsilon"] == 1e-5
    assert not any(name.startswith("moe.") for name in record["model_config"])     # dense: no routing fields
    assert compat.mismatches(record, cfg, semantics=True) == []


def run(recorded, *args):
    proc = myllm([*args, "--checkpoint", str(recorded["checkpoint"])])
    out = finish(proc, timeout=300)
    return proc.returncode, out


def generate(recorded, *overrides):
    return run(recorded, "generate", "configs/tiny.yaml", "--set", *recorded["overrides"], *overrides,
               "--prompt", "Once upon a time", "--max-new-tokens", "4", "--temperature", "0")


@pytest.mark.parametrize("override, named", [
    ("model.rotary_base=500000", "model.rotary_base 10000 → 500000"),
    ("model.norm_epsilon=0.1", "model.norm_epsilon 1e-05 → 0.1"),
    ("model.kv_channels=64", "model.kv_channels 32 → 64"),
])
def test_generate_with_another_model_config_is_refused_in_one_line(recorded, override, named):
    code, out = generate(recorded, override)
    assert code == 2, out[-3000:]
    assert_short(out, "was saved with another model", named, "fix: use the config and tokenizer it was trained",
                 most=1)
    assert "prefill" not in out


def test_generate_and_eval_with_another_tokenizer_are_refused(recorded, small_data, tmp_path):
    other = f"data.tokenizer={small_data['tokenizer']}"     # 512 entries: fits the 1,024-row model, other ids
    code, out = generate(recorded, other)
    assert code == 2, out[-3000:]
    assert_short(out, "was saved with another tokenizer", "(another tokenizer)", most=1)
    text = tmp_path / "docs.txt"
    text.write_text("Once upon a time there was a king.\n")
    code, out = run(recorded, "eval", "configs/tiny.yaml", "--set", *recorded["overrides"], other, "--text",
                    str(text))
    assert code == 2, out[-3000:]
    assert_short(out, "was saved with another tokenizer", most=1)


@pytest.mark.parametrize("fmt, extra", [("gguf", "--tokenizer"), ("hf", "model.rotary_base=500000")])
def test_an_export_with_another_tokenizer_or_rope_base_is_refused_and_nothing_written(recorded, small_data,
                                                                                      tmp_path, fmt, extra):
    out_path = tmp_path / ("m.gguf" if fmt == "gguf" else "hf")
    args = ["export", fmt, "configs/tiny.yaml", "--out", str(out_path), *(f"--set={o}" for o in recorded["overrides"])]
    if extra == "--tokenizer":
        args += ["--tokenizer", str(small_data["tokenizer"])]
    else:
        args += [f"--set={extra}"]
    code, out = run(recorded, *args)
    assert code == 2, out[-3000:]
    assert_short(out, "was saved with another", most=1)
    assert not out_path.exists() and not list(tmp_path.glob(f".{out_path.name}*"))

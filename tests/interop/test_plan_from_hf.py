"""`myllm plan --from-hf DIR`: the planner's report for an HF model from its config.json alone — the same count
as the weights, torch never imported, an unconvertible family refused as the import would refuse it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from family_models import FAMILIES, MOE_FAMILIES

from tests.helpers.torchrun import REPO_ROOT

QWEN3_0_6B = {   # Qwen/Qwen3-0.6B config.json, the keys that shape the model
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
    "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 151936, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
    "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "silu",
    "use_sliding_window": False, "sliding_window": None, "max_window_layers": 28}


@pytest.mark.parametrize("family", FAMILIES + MOE_FAMILIES)
def test_plan_from_hf_counts_the_weights(family, family_hf_dirs, capsys):
    from safetensors.torch import load_file

    from myllm_mc.cli import main

    source = family_hf_dirs[family]
    assert main(["plan", "--from-hf", str(source), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params.total"]["value"] == sum(t.numel() for t in load_file(str(source / "model.safetensors")).values())
    assert report["kv.bytes_per_token"]["value"] > 0 and report["memory.total"]["value"] > 0


def test_plan_from_hf_is_torch_free_and_real_shaped(tmp_path):
    (tmp_path / "qwen3-0.6b").mkdir()
    (tmp_path / "qwen3-0.6b" / "config.json").write_text(json.dumps(QWEN3_0_6B))
    script = ("import json, sys\nfrom myllm_mc.cli import main\n"
              f"code = main(['plan', '--from-hf', {str(tmp_path / 'qwen3-0.6b')!r}, '--set', 'model.seq_length=8192'])\n"
              "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'megatron', 'transformers'})\n"
              "print(json.dumps({'code': code, 'heavy': heavy}))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}
    assert "qwen3 family" in done.stdout and "596,049,920" in done.stdout

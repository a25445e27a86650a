"""Mixture-of-experts interop beyond the per-family round trips (test_families.py, test_family_gguf.py): the
routing variants (Qwen3-MoE's dense layers and un-renormalised top-k), what is refused in one line, and the
published total / active parameter counts of Qwen3-30B-A3B and Mixtral 8x7B from their config.json and presets."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from family_models import PROMPT_TEXTS, save_family
from interop_helpers import hf_greedy, needs_llama_cpp
from test_family_refusals import _refused, _variant

from tests.helpers.torchrun import REPO_ROOT

QWEN3_30B_A3B = {   # Qwen/Qwen3-30B-A3B config.json, the keys that shape the model
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_hidden_layers": 48, "num_attention_heads": 32,
    "num_key_value_heads": 4, "head_dim": 128, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": True,
    "decoder_sparse_step": 1, "mlp_only_layers": [], "vocab_size": 151936, "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "rope_scaling": None, "tie_word_embeddings": False,
    "attention_bias": False, "hidden_act": "silu", "use_sliding_window": False, "sliding_window": None,
    "max_window_layers": 48, "router_aux_loss_coef": 0.001, "output_router_logits": False}
MIXTRAL_8X7B = {    # mistralai/Mixtral-8x7B-v0.1 config.json
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "num_experts_per_tok": 2, "vocab_size": 32000, "max_position_embeddings": 32768, "rms_norm_eps": 1e-05,
    "rope_theta": 1e6, "sliding_window": None, "tie_word_embeddings": False, "hidden_act": "silu",
    "router_aux_loss_coef": 0.02, "output_router_logits": False}
PUBLISHED = {   # (config.json, preset, total, active): "30.5B / 3.3B activated", "46.7B / 12.9B active"
    "qwen3-30b-a3b": (QWEN3_30B_A3B, 30_532_122_624, 3_353_032_704),
    "mixtral-8x7b": (MIXTRAL_8X7B, 46_702_792_704, 12_879_925_248),
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_total_and_active_counts(name, tmp_path, single_rank):
    """The preset, the megatron-core GPTModel built from it on the meta device, and `myllm plan --from-hf` on the
    release's config.json (a subprocess, no weights) all give the published counts: total = embeddings + L ×
    (attention + router + E experts + norms) + final norm + output; active = total − L × (E − k) × 3·h·f_e."""
    from myllm_mc.config import load
    from myllm_mc.model import build_model, parameter_counts
    from myllm_mc.parallel.state import init_distributed
    from myllm_mc.plan.params import parameter_breakdown

    config, total, active = PUBLISHED[name]
    cfg = load(f"configs/{name}.yaml", ["parallel.world_size=auto", "parallel.expert=1",
                                        "training.global_batch_size=1"], world_size=1)
    planned = parameter_breakdown(cfg.model)
    assert (planned.total, planned.active) == (total, active)
    init_distributed(cfg)
    chunks = build_model(cfg, on_meta_device=True)
    assert parameter_counts(chunks)["total"] == total
    mlp = chunks[0].decoder.layers[0].mlp
    assert len(mlp.experts.local_experts) == cfg.model.moe.num_experts and mlp.router.topk == cfg.model.moe.top_k
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "plan", "--from-hf", str(tmp_path / name), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["params.total"]["value"], report["params.active"]["value"]) == (total, active)


def test_qwen3_moe_dense_layers_and_raw_topk_weights(family_hf_dirs, tmp_path, capsys):
    """mlp_only_layers=[0] (layer 0 dense, intermediate 160) and norm_topk_prob=false (softmax, top-2, weights not
    renormalised → megatron's router_pre_softmax): logits within 1e-4 of transformers, greedy identical, export
    bit-exact with the same config keys; the other routing on the same weights is far off (the mapping matters);
    GGUF export refused in one line (llama.cpp's qwen3moe routes every layer and renormalises)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from myllm_mc.checkpoint import load_model
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.interop.hf_export import export_hf
    from myllm_mc.interop.hf_import import import_hf
    from myllm_mc.interop.weights import build_single, greedy_recompute, logits, single_process

    source = save_family("qwen3_moe", tmp_path / "src", family_hf_dirs["qwen3_moe"].parent / "tokenizer",
                         mlp_only_layers=[0], norm_topk_prob=False)
    import_hf(source, tmp_path / "imported")
    cfg = load(tmp_path / "imported" / "config.yaml", world_size=1)
    assert (cfg.model.moe.layer_pattern, cfg.model.moe.router_pre_softmax) == ([0, 1], True)
    hf = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tok = Tokenizer(source / "tokenizer.json")
    models = {}
    for pre_softmax in (True, False):
        one = replace(cfg, model=replace(cfg.model, moe=replace(cfg.model.moe, router_pre_softmax=pre_softmax)))
        models[pre_softmax] = build_single(single_process(one))
        load_model([models[pre_softmax]], cfg.checkpoint.init_from)
    deltas = {True: 0.0, False: 0.0}
    for text in PROMPT_TEXTS:
        ids = torch.tensor([tok.encode(text)])
        with torch.no_grad():
            want = hf(ids).logits
        for key, model in models.items():
            deltas[key] = max(deltas[key], (want - logits(model, ids)[..., :1024]).abs().max().item())
    with capsys.disabled():
        print(f"qwen3_moe (dense layer 0, norm_topk_prob false): max |Δlogit| {deltas[True]:.2e}; with"
              f" renormalised top-k instead {deltas[False]:.2e}")
    assert deltas[True] < 1e-4 and deltas[False] > 1e-2
    prompt = tok.encode(PROMPT_TEXTS[0])
    ours = greedy_recompute(models[True], prompt, 16, 1024)
    assert len(set(ours)) >= 4 and hf_greedy(hf, prompt, 16) == ours

    export_hf(cfg, cfg.checkpoint.init_from, tmp_path / "again")
    first, second = (load_file(str(d / "model.safetensors")) for d in (source, tmp_path / "again"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    config = json.loads((tmp_path / "again" / "config.json").read_text())
    assert (config["mlp_only_layers"], config["norm_topk_prob"], config["num_experts"]) == ([0], False, 4)
    out = tmp_path / "m.gguf"
    capsys.readouterr()                              # transformers' progress bars
    _refused(capsys, ["export", "gguf", str(tmp_path / "imported" / "config.yaml"), "--checkpoint",
                      str(cfg.checkpoint.init_from), "--out", str(out)], out,
             "model.moe.layer_pattern=[0, 1]", "model.moe.router_pre_softmax=True", "qwen3moe", "export it as HF")


@pytest.mark.parametrize("family, changes, words", [
    ("mixtral", {"router_jitter_noise": 0.01}, ["router_jitter_noise=0.01"]),
    ("mixtral", {"sliding_window": 16}, ["sliding_window=16"]),
    ("qwen3_moe", {"use_sliding_window": True, "sliding_window": 16}, ["sliding_window=16"]),
    ("qwen3_moe", {"num_experts_per_tok": 1}, ["num_experts_per_tok=1"]),
    ("qwen3_moe", {"mlp_only_layers": [0, 1]}, ["no MoE layer"]),
    ("qwen3_moe", {"moe_intermediate_size": ...}, ["moe_intermediate_size missing"]),
])
def test_moe_import_refusals_name_the_key(family, changes, words, family_hf_dirs, tmp_path, capsys):
    source = _variant(family_hf_dirs[family], tmp_path / "src", **changes)
    out = tmp_path / "out"
    _refused(capsys, ["import", "hf", str(source), "--out", str(out)], out, *words)


def test_moe_export_refuses_what_the_family_cannot_hold(family_imports, tmp_path, capsys):
    """A router HF's families lack (sigmoid scores), Mixtral without renormalisation, an MoE config exported as a
    dense family: one line naming the field, nothing written; and `myllm import hf` of a jittered Mixtral as
    users run it (a subprocess)."""
    out = tmp_path / "hf"
    for family, overrides, words in (
            ("qwen3_moe", ["model.moe.router_score=sigmoid"], ["model.moe.router_score=sigmoid"]),
            ("mixtral", ["model.moe.router_pre_softmax=true"], ["model.moe.router_pre_softmax=True"]),
            ("qwen3_moe", ["model.family=qwen3"], ["model.moe.num_experts=4", "HF/GGUF qwen3"])):
        entry = family_imports[family]
        argv = ["export", "hf", str(entry["config_path"]), "--checkpoint", str(entry["checkpoint"]), "--out", str(out)]
        _refused(capsys, argv + [item for o in overrides for item in ("--set", o)], out, *words)


def test_jittered_mixtral_refused_by_the_cli(family_hf_dirs, tmp_path):
    source = _variant(family_hf_dirs["mixtral"], tmp_path / "src", router_jitter_noise=0.1)
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "import", "hf", str(source), "--out",
                           str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.startswith("myllm import:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "router_jitter_noise=0.1" in lines[0] and "fix: set router_jitter_noise to 0.0" in lines[0]
    assert not (tmp_path / "out").exists()


@needs_llama_cpp
@pytest.mark.slow
def test_moe_export_check_as_users_run_it(family_imports, tmp_path):
    """`myllm export hf|gguf ... --check` (subprocesses): transformers reads the Qwen3-MoE HF export and llama.cpp
    the Mixtral F32 GGUF, each compared with the checkpoint on held-out corpus windows: top-1 agreement 100 %."""
    for fmt, family, words in (("hf", "qwen3_moe", "check (transformers, f32"), ("gguf", "mixtral", "check (llama.cpp, f32")):
        entry = family_imports[family]
        out = tmp_path / (f"{family}.gguf" if fmt == "gguf" else family)
        done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "export", fmt, str(entry["config_path"]),
                               "--checkpoint", str(entry["checkpoint"]), "--out", str(out), "--type", "f32", "--check"],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        line = next(line for line in done.stdout.splitlines() if line.startswith("check ("))
        print(f"{family} {fmt}: {line}")
        assert words in line and "top-1 agreement 100.00%" in line, line


def test_moe_gguf_check_without_llama_cpp_is_refused(family_imports, tmp_path, monkeypatch):
    """Without llama.cpp, `export gguf --check` falls back to transformers' GGUF reader, which cannot read MoE files
    (Mixtral's as a dense Llama with random MLPs: logits off by 6.6 on the test model; Qwen3-MoE's fails on the
    expert size): one line naming the llama.cpp install instead of a wrong verdict."""
    from myllm_mc.interop import export_check

    monkeypatch.setattr(export_check, "llama_cpp_available", lambda: False)
    entry = family_imports["mixtral"]
    with pytest.raises(export_check.ExportMismatch) as err:
        export_check.check_export(entry["cfg"], str(entry["checkpoint"]), "gguf", tmp_path / "m.gguf", "f32")
    line = str(err.value)
    assert len(line.splitlines()) == 1 and "cannot check a mixture-of-experts GGUF" in line, line
    assert "fix: for the llama.cpp check: bash tools/install_llama_cpp.sh" in line, line

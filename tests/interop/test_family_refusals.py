"""What the registry refuses, each in one line that names the field, exit 2, nothing written: a family we do not
support (phi3, as a subprocess of the real CLI), Gemma 3 (megatron-core cannot express it exactly), a RoPE type
we lack, Llama 3 scaling with parameters megatron-core fixes otherwise, a sliding window that would take effect,
and an export whose config the family's layout cannot hold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.helpers.torchrun import REPO_ROOT


def _variant(source, target, **changes):
    """A copy of an HF directory's config + tokenizer (no weights needed: refusals come first) with `changes`."""
    target.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    config = json.loads((source / "config.json").read_text())
    config.update(changes)
    (target / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not ...}))
    return target


def _refused(capsys, argv, out, *words):
    from myllm_mc.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "fix:" in err, err
    assert all(w in err for w in words), err
    assert not out.exists() and not any(out.parent.glob(f".{out.name}.tmp*")), "something was written"
    return err


def test_an_unsupported_family_is_refused_by_the_cli(family_hf_dirs, tmp_path):
    source = _variant(family_hf_dirs["qwen2"], tmp_path / "phi3", model_type="phi3",
                      architectures=["Phi3ForCausalLM"])
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "import", "hf", str(source), "--out", str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("myllm import:")]
    assert len(lines) == 1 and "model_type 'phi3' (Phi3ForCausalLM) is not a supported family" in lines[0], done.stderr
    assert "fix:" in lines[0] and "qwen3" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("name, changes, words", [
    ("gemma3", {"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"]},
     ["'gemma3_text'", "refused, not approximated", "post-attention / post-MLP norm"]),
    ("yarn", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}},
     ["rope_scaling.rope_type 'yarn'"]),
    ("window", {"use_sliding_window": True, "sliding_window": 16, "layer_types": ...},
     ["sliding_window=16"]),
    ("layers", {"layer_types": ["sliding_attention", "full_attention"]}, ["layer_types"]),
    ("act", {"hidden_act": "gelu"}, ["hidden_act 'gelu'"]),
])
def test_import_refusals_name_the_field(name, changes, words, family_hf_dirs, tmp_path, capsys):
    source = _variant(family_hf_dirs["qwen2"], tmp_path / name, **changes)
    out = tmp_path / "out"
    _refused(capsys, ["import", "hf", str(source), "--out", str(out)], out, *words)


def test_llama3_scaling_with_other_fixed_parameters_is_refused(family_hf_dirs, tmp_path, capsys):
    config = json.loads((family_hf_dirs["llama"] / "config.json").read_text())
    rope = {**config["rope_parameters"], "low_freq_factor": 2.0}
    source = _variant(family_hf_dirs["llama"], tmp_path / "low", rope_parameters=rope)
    out = tmp_path / "out"
    _refused(capsys, ["import", "hf", str(source), "--out", str(out)], out, "rope_scaling.low_freq_factor=2.0",
             "fixes 1")


def test_export_refuses_a_config_its_family_cannot_hold(family_imports, tmp_path, capsys):
    entry = family_imports["qwen3"]
    out = tmp_path / "hf"
    for overrides, words in ((["model.family=llama"], ["model.qk_norm=True", "HF/GGUF llama"]),
                             (["model.family=phi3"], ["model.family='phi3'"]),
                             (["model.family=qwen2", "model.qk_norm=false"], ["model.qkv_bias=False"])):
        argv = ["export", "hf", str(entry["config_path"]), "--checkpoint", str(entry["checkpoint"]), "--out", str(out)]
        _refused(capsys, argv + [item for o in overrides for item in ("--set", o)], out, *words)

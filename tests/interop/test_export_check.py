"""`myllm export … --check`: the export loaded by transformers / llama.cpp reproduces the checkpoint (one line of
figures), and an export that does not match its checkpoint is refused with exit 1. Without llama.cpp the GGUF is
read by transformers' GGUF loader instead, and the command says so and how to get the llama.cpp check."""

import os
import re
import subprocess
import sys

from interop_helpers import HAVE_LLAMA_CPP, REPO

from myllm_mc.interop.export_cli import main


def _figures(line):
    agree = float(re.search(r"top-1 agreement ([\d.]+)%", line).group(1))
    worst = float(re.search(r"max \|Δ logit\| ([\d.e+-]+)", line).group(1))
    return agree, worst


def test_hf_f32_and_gguf_q8_0_checks_pass_with_their_figures(interop_model, tmp_path, capsys):
    config, checkpoint = str(interop_model["config_path"]), str(interop_model["checkpoint"])
    assert main(["hf", config, "--checkpoint", checkpoint, "--out", str(tmp_path / "hf"), "--check"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    print(line)
    agree, worst = _figures(line)
    assert line.startswith("check (transformers, f32") and agree == 100.0 and worst < 1e-3
    assert main(["gguf", config, "--checkpoint", checkpoint, "--out", str(tmp_path / "m.gguf"), "--type", "q8_0",
                 "--check"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    print(line)
    agree, _ = _figures(line)
    reader = "llama.cpp" if HAVE_LLAMA_CPP else "transformers GGUF reader"    # llama.cpp: the reference, if there
    assert line.startswith(f"check ({reader}, q8_0") and agree >= 95.0


# `myllm` with llama.cpp hidden, however it is installed: a None entry in sys.modules makes `import llama_cpp` raise
# ModuleNotFoundError and importlib.util.find_spec("llama_cpp") return None, as on a machine without it
WITHOUT_LLAMA_CPP = ("import runpy, sys; sys.modules['llama_cpp'] = None; sys.argv[0] = 'myllm'; "
                     "runpy.run_module('myllm_mc.cli', run_name='__main__')")


def test_gguf_check_without_llama_cpp_uses_transformers_gguf_reader_and_says_how_to_get_llama_cpp(
        interop_model, tmp_path):
    """A fresh `.[all]` install has no llama.cpp: `myllm export gguf --check` still checks the file (transformers'
    GGUF loader: gguf-py dequantizes, transformers un-permutes Q/K — none of our code), exits 0, names the reader in
    its line and says in one more line how to get the llama.cpp check. Measured on this model: Q8_0 top-1 99.6 %,
    perplexity +0.03 %; F32 top-1 100 %, max |Δ logit| 0."""
    from myllm_mc.interop.scoring import llama_cpp_install_hint

    config, checkpoint = str(interop_model["config_path"]), str(interop_model["checkpoint"])
    done = subprocess.run([sys.executable, "-c", WITHOUT_LLAMA_CPP, "export", "gguf", config, "--checkpoint",
                           checkpoint, "--out", str(tmp_path / "m.gguf"), "--type", "q8_0", "--check"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    line = done.stdout.strip().splitlines()[-1]
    print(line)
    assert line.startswith("check (transformers GGUF reader, q8_0, 512 held-out tokens): perplexity "), line
    agree, worst = _figures(line)
    change = float(re.search(r"\(([+-][\d.]+)%\)", line).group(1))
    assert agree >= 95.0 and abs(change) < 1.0 and 0 < worst < 1.0, line       # Q8_0 rounds, but only a little
    pointer = [x for x in done.stderr.splitlines() if "for the llama.cpp check" in x]
    assert pointer == ["llama.cpp (llama-cpp-python) is not installed; checked with transformers GGUF reader instead"
                       f" — for the llama.cpp check: {llama_cpp_install_hint()}"], done.stderr[-3000:]


def test_f32_gguf_read_by_transformers_equals_the_checkpoint(interop_model, tmp_path, monkeypatch, capsys):
    """F32 through transformers' GGUF loader: the same fp32 model as ours, so every top-1 agrees and the logits
    match to fp32 rounding — an independent check of the mapping (Q/K permutation, grouping, tied output)."""
    from myllm_mc.interop.export_check import TRANSFORMERS_GGUF, check_export, gguf_reader
    from myllm_mc.interop.gguf_export import export_gguf

    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert gguf_reader()[0] == TRANSFORMERS_GGUF
    cfg, checkpoint = interop_model["cfg"], str(interop_model["checkpoint"])
    export_gguf(cfg, checkpoint, tmp_path / "m.gguf", "f32")
    line = check_export(cfg, checkpoint, "gguf", tmp_path / "m.gguf", "f32")
    print(line)
    agree, worst = _figures(line)
    assert line.startswith("check (transformers GGUF reader, f32") and agree == 100.0 and worst < 1e-3, line
    assert "for the llama.cpp check" in capsys.readouterr().err


def test_an_export_that_does_not_match_its_checkpoint_is_refused(interop_model, tmp_path):
    import pytest

    from myllm_mc.checkpoint import save_model
    from myllm_mc.interop.export_check import ExportMismatch, check_export
    from myllm_mc.interop.hf_export import export_hf
    from myllm_mc.interop.weights import build_single, single_process

    cfg = interop_model["cfg"]
    export_hf(cfg, str(interop_model["checkpoint"]), tmp_path / "hf")
    other = build_single(single_process(cfg))                       # untrained weights, same shapes
    save_model([other], str(tmp_path / "untrained"))
    with pytest.raises(ExportMismatch, match=r"below the 99% floor for f32"):
        check_export(cfg, str(tmp_path / "untrained"), "hf", tmp_path / "hf", "f32")

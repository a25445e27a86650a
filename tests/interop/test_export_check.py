"""`myllm export … --check`: the export loaded by transformers / llama.cpp reproduces the checkpoint (one line of
figures), and an export that does not match its checkpoint is refused with exit 1."""

import re

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
    assert line.startswith("check (llama.cpp, q8_0") and agree >= 95.0


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

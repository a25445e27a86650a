"""The `myllm plan` command: JSON parses, errors are one line, and no torch is imported."""

import json
import subprocess
import sys
from pathlib import Path

from myllm_mc.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "myllm_1b.yaml")


def test_json_output(capsys):
    assert main(["plan", CONFIG, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params.total"]["value"] == 1_055_231_744
    assert data["steps"]["value"] == 26_264
    assert all(set(v) >= {"value", "why"} for v in data.values())


def test_text_output_has_every_section(capsys):
    assert main(["plan", CONFIG]) == 0
    out = capsys.readouterr().out
    for text in ("1,055,231,744", "11.09 nats", "26,264", "1.74e20", "28,672 B", "235 MB", "1,587 tok/s", "12.2 h"):
        assert text in out


def test_layouts_and_derive_json(capsys):
    assert main(["plan", "--layouts", CONFIG, "--gpus", "8", "--gpu", "h100", "--json"]) == 0
    layouts = json.loads(capsys.readouterr().out)
    assert layouts["recommended"] == "TP1×PP1×CP1×DP8" and layouts["layouts"]
    assert main(["plan", "--derive", "--params", "1.05e9", "--tokens", "27.54e9", "--json"]) == 0
    derived = json.loads(capsys.readouterr().out)
    assert derived["config"]["model"]["hidden_size"] == 1792


def test_bad_gpu_is_a_one_line_error(capsys):
    assert main(["plan", CONFIG, "--gpu", "v100"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "h100" in err and "fix" in err


def test_plan_imports_neither_torch_nor_megatron():
    script = (
        "import sys\n"
        "from myllm_mc.cli import main\n"
        f"main(['plan', {CONFIG!r}]); main(['plan', '--layouts', {CONFIG!r}])\n"
        "main(['plan', '--derive', '--params', '1.05e9'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'megatron', 'transformer_engine')]\n"
        "assert not bad, bad\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("ok")     # how long it takes is a benchmark's business, not a test's

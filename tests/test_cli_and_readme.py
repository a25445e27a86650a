"""The CLI's stage list and the README/CI contract."""

import re
import subprocess
import sys
from pathlib import Path

from myllm_mc.cli import NOT_BUILT_EXIT, STAGES, main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_stages_in_chain_order(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    order = ["plan", "tokenizer", "preprocess", "train", "finetune", "generate", "export", "serve", "benchmark"]
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    positions = [names.index(name) for name in order]
    assert positions == sorted(positions)


def test_unbuilt_stage_says_so_and_exits_nonzero(capsys, monkeypatch):
    import myllm_mc.cli as cli
    monkeypatch.setattr(cli, "STAGES", STAGES + [("dream", "myllm_mc.does_not_exist:main", "x")])
    assert cli.main(["dream"]) == NOT_BUILT_EXIT
    err = capsys.readouterr().err.strip()
    assert err == "myllm dream: not built yet in this version of myllm_mc (see README, 'Status')"


def test_unknown_stage_suggests_closest(capsys):
    assert main(["trian"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err


def _readme_block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(marker):]
    return re.search(r"```bash\n(.+?)\n```", after, re.S).group(1).strip()


def test_ci_runs_exactly_the_readme_test_commands():
    fast, slow = _readme_block_after("Run the tests"), _readme_block_after("The slow tier")
    assert fast == "python -m pytest -q tests" and slow == "python -m pytest -q -m slow tests"
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    commands = [line.removesuffix(" || status=1") for line in ci if line.startswith("python -m pytest")]
    assert commands == [fast, slow]


def test_readme_quickstart_command_installs_and_runs_the_quickstart():
    quickstart = _readme_block_after("Install and run the quickstart")
    assert "pip install torch==2.13.0" in quickstart and "examples/quickstart.sh" in quickstart
    assert (ROOT / "examples/quickstart.sh").is_file()


def test_module_entry_point_runs_without_torch():
    code = "import sys; from myllm_mc.cli import main; main(['--help']); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)

"""The commands that need no model answer without importing torch or megatron-core, in a fresh interpreter.

Imports sit at the top of modules (README, Layout); these entry points are the exceptions' reason: what they
reach must stay torch-free, so torch-bound imports below them stay deferred. A top-level import that pulls torch
into one of them fails here, with the entry point that did it.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "megatron", "transformer_engine", "transformers", "webdataset")

SCRIPT = r'''
import contextlib, importlib.util, io, json, sys
HEAVY = %(heavy)r
corpus, config = sys.argv[1], sys.argv[2]
from myllm_mc.cli import main

def run(*argv):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return main(list(argv))
        except SystemExit as stop:         # a stage's --help ends in argparse's exit
            return stop.code

steps = [
    ("myllm --help", lambda: run("--help")),
    ("myllm --version", lambda: run("--version")),
    ("myllm plan", lambda: run("plan", config, "--json")),
    ("myllm plan --layouts", lambda: run("plan", "--layouts", config, "--gpus", "8")),
    ("myllm config show", lambda: run("config", "show", config)),
    ("myllm config check", lambda: run("config", "check", config)),
    ("myllm data stats", lambda: run("data", "stats", corpus, "--json")),
    ("myllm checkpoint inspect", lambda: run("checkpoint", "inspect", corpus + ".absent")),
    ("import myllm_mc.errors, myllm_mc.jsonl", lambda: __import__("myllm_mc.jsonl") and __import__("myllm_mc.errors")),
    ("import myllm_mc.data.stats", lambda: __import__("myllm_mc.data.stats")),
    ("import myllm_mc.data.tokenizer_training", lambda: __import__("myllm_mc.data.tokenizer_training")),
    ("import myllm_mc.data.preprocess_cli", lambda: __import__("myllm_mc.data.preprocess_cli")),
    ("import myllm_mc.checkpoint", lambda: __import__("myllm_mc.checkpoint")),
    # what the launching parents of train / finetune / benchmark import before torchrun starts the ranks
    ("import myllm_mc.data.shipped (train's parent)", lambda: __import__("myllm_mc.data.shipped")),
    ("import myllm_mc.align.sft (finetune's parent)", lambda: __import__("myllm_mc.align.sft")),
    ("import myllm_mc.bench.measure (benchmark's parent)", lambda: __import__("myllm_mc.bench.measure")),
]
steps += [(f"myllm {stage} --help", lambda stage=stage: run(stage, "--help"))
          for stage in ("data", "tokenizer", "preprocess", "train", "checkpoint", "finetune", "serve", "benchmark")]
if importlib.util.find_spec("starlette") and importlib.util.find_spec("pydantic"):     # the serve extra
    steps.append(("import myllm_mc.serve.app", lambda: __import__("myllm_mc.serve.app")))
report = []
for name, step in steps:
    code = step()
    code = code if isinstance(code, (int, type(None))) else None    # an import step returns its module
    report.append((name, code, sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in HEAVY})))
print(json.dumps(report))
'''


def test_light_entry_points_import_neither_torch_nor_megatron(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"text": "one document"}\n{"text": "and another"}\n')
    proc = subprocess.run([sys.executable, "-c", SCRIPT % {"heavy": HEAVY}, str(corpus),
                           str(ROOT / "configs" / "tiny.yaml")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) >= 20
    codes = {name: code for name, code, _ in report}
    assert codes["myllm plan"] == codes["myllm config show"] == codes["myllm data stats"] == 0, codes
    assert codes["myllm train --help"] == codes["myllm preprocess --help"] == 0, codes
    first_heavy = next(((name, heavy) for name, _, heavy in report if heavy), None)
    assert first_heavy is None, f"{first_heavy[0]} imported {', '.join(first_heavy[1])}"


def test_generate_chat_eval_and_the_grpo_check_answer_before_megatron_loads():
    """`myllm generate|chat|eval` import torch (their packages do) but not megatron-core, seconds more to import,
    until a model loads: --help and their input refusals stay quick; so does `myllm finetune grpo`'s config check."""
    script = ("import sys\n"
              "import myllm_mc.infer.generate_cli, myllm_mc.infer.chat_cli\n"
              "import myllm_mc.evaluate.cli, myllm_mc.align.grpo\n"
              "print(sorted({m.split('.')[0] for m in sys.modules\n"
              "              if m.split('.')[0] in ('megatron', 'transformer_engine')}))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"

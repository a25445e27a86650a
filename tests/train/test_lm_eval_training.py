"""`training.eval_lm_eval`: lm-evaluation-harness tasks scored on the training weights at the start, every
`eval_interval` and at the end (myllm_mc/train/lm_eval_callback.py), through `myllm eval --lm-eval`'s backend.

Fast tier: a layout rank 0 cannot run the whole model in, and a non-positive limit, are one ConfigError line.
Slow tier (two CLI subprocesses, ~40 s): a 6-step `myllm train` with two local tasks cut to 3 documents writes the
rows at steps 0, 4 and 6; the figures at step 6 equal `myllm eval --lm-eval` on the checkpoint saved there; a
mistyped task name stops `myllm train` before it starts, in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed — install: pip install -e \".[lm_eval]\"")

REPO = Path(__file__).resolve().parents[2]
TASKS = ["myllm_arithmetic_mc", "myllm_verses_ppl"]
KEYS = {"lm_eval/myllm_arithmetic_mc/acc", "lm_eval/myllm_arithmetic_mc/acc_norm",
        "lm_eval/myllm_verses_ppl/word_perplexity", "lm_eval/myllm_verses_ppl/byte_perplexity",
        "lm_eval/myllm_verses_ppl/bits_per_byte"}


def _myllm(*args, timeout=600):
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    try:
        return subprocess.run([sys.executable, "-m", "myllm_mc.cli", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        print(f"myllm {args[0]}: {time.perf_counter() - started:.1f} s")


@pytest.mark.parametrize("overrides, message", [
    (["parallel.tensor=2"], "not with tensor/pipeline parallelism — fix: --set training.eval_lm_eval=[]"),
    (["training.eval_lm_eval_limit=0"], "training.eval_lm_eval_limit 0 is not positive — fix:"),
])
def test_refusals_are_one_line(overrides, message):
    from myllm_mc.config import ConfigError, load
    from myllm_mc.evaluate.lm_eval_run import training_lm_eval

    cfg = load("configs/tiny.yaml", ["training.eval_lm_eval=[myllm_arithmetic_mc]", *overrides], world_size=2)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        training_lm_eval(cfg)
    assert training_lm_eval(load("configs/tiny.yaml", [], world_size=1)) is None


def test_metric_names():
    from myllm_mc.evaluate.lm_eval_run import training_metrics

    figures = {"tasks": {"gen": {"exact_match (number)": 0.25, "exact_match_stderr (number)": 0.1},
                         "ppl": {"bits_per_byte": 5.5, "word_perplexity": None}}}
    assert training_metrics(figures) == {"lm_eval/gen/exact_match_number": 0.25, "lm_eval/ppl/bits_per_byte": 5.5}


@pytest.mark.slow
def test_training_time_lm_eval_equals_myllm_eval_on_the_saved_checkpoint(tiny_data, tmp_path):
    overrides = tiny_data + ["training.steps=6", "training.eval_interval=4", "training.eval_steps=1",
                             f"logging.dir={tmp_path / 'log'}", f"checkpoint.dir={tmp_path / 'ckpt'}",
                             "checkpoint.save_interval=100", "logging.plot=true", "optimizer.lr=1e-2",
                             f"training.eval_lm_eval=[{','.join(TASKS)}]", "training.eval_lm_eval_limit=3"]
    trained = _myllm("train", "configs/tiny.yaml", "--set", *overrides)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "log" / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if r["kind"] == "valid" and "lm_eval/myllm_verses_ppl/bits_per_byte" in r]
    print("lm-eval rows:", [(r["step"], {k.split("/", 1)[1]: round(v, 4) for k, v in r.items() if "/" in k})
                            for r in scored])
    assert [r["step"] for r in scored] == [0, 4, 6]
    assert all(set(r) == {"kind", "step", *KEYS} for r in scored)
    assert all(r["lm_eval/myllm_arithmetic_mc/acc"] * 3 in (0, 1, 2, 3) for r in scored)      # 3 documents
    first, last = scored[0], scored[-1]
    assert last["lm_eval/myllm_verses_ppl/bits_per_byte"] < first["lm_eval/myllm_verses_ppl/bits_per_byte"] - 0.1
    assert [r["step"] for r in rows if r["kind"] == "valid" and "loss" in r] == [4]   # validation loss unchanged
    assert (tmp_path / "log" / "loss.png").stat().st_size > 10_000

    report = tmp_path / "report.json"
    evaluated = _myllm("eval", "configs/tiny.yaml", "--set", *overrides, "--checkpoint", str(tmp_path / "ckpt"),
                       "--lm-eval", ",".join(TASKS), "--lm-eval-limit", "3", "--out", str(report))
    assert evaluated.returncode == 0, (evaluated.stdout + evaluated.stderr)[-3000:]
    (checkpoint,) = json.loads(report.read_text())["checkpoints"]
    assert checkpoint["resolved"].endswith("step_0000006")
    tasks = checkpoint["lm_eval"]["tasks"]
    from_eval = {f"lm_eval/{task}/{metric}": value for task, metrics in tasks.items()
                 for metric, value in metrics.items() if "_stderr" not in metric}
    assert from_eval == {key: last[key] for key in KEYS}                   # the same numbers, exactly

    mistyped = _myllm("train", "configs/tiny.yaml", "--set", *overrides[:-2], "training.eval_lm_eval=[myllm_arithmetic_mcc]")
    assert mistyped.returncode == 2
    lines = mistyped.stderr.strip().splitlines()
    assert lines[-1].startswith("config error: training.eval_lm_eval: unknown lm-eval task 'myllm_arithmetic_mcc'"
                                " — fix: did you mean myllm_arithmetic_mc"), mistyped.stderr[-2000:]
    assert not (tmp_path / "ckpt" / "step_0000007").exists() and "step 1/" not in mistyped.stdout

"""The newcomer's first command, `bash examples/quickstart.sh`, end to end in a copy of this checkout: every
stage runs (rc 0) and each one leaves the figure it exists to produce. About 3–7 minutes on 2 cores."""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from myllm_mc.checkpoint.cli import describe

ROOT = Path(__file__).resolve().parents[1]


def _copy_checkout(dest: Path) -> None:
    """Tracked and untracked-but-not-ignored files, as a fresh clone of this working tree would have them."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.mark.slow
@pytest.mark.timeout(1900)
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_quickstart_runs_the_whole_chain(tmp_path):
    repo = tmp_path / "clone"
    _copy_checkout(repo)
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONWARNINGS="ignore")
    done = subprocess.run(["bash", "examples/quickstart.sh"], cwd=repo, capture_output=True, text=True,
                          timeout=1800, env=env)
    log = done.stdout + done.stderr
    (ROOT / "runs" / "test-artifacts").mkdir(parents=True, exist_ok=True)
    (ROOT / "runs" / "test-artifacts" / "quickstart.log").write_text(log)
    assert done.returncode == 0, log[-4000:]
    headers = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [h.split(".")[0] for h in headers] == [f"== {i}" for i in range(1, 14)]
    # the last line: the total and each stage's seconds
    last = done.stdout.splitlines()[-1]
    assert re.fullmatch(r"quickstart: 13 stages in \d+ s \(1: \d+ s( · \d+: \d+ s){12}\)", last), last
    runs = repo / "runs"
    # 5. pretraining at DP=2 through `--nproc-per-node 2` (torchrun started by the CLI), 60 steps. Measured: train
    # loss 5.94 at step 60 and held-out loss 6.32 → 5.87 from step 30 to 60. From ln V = 9.01, a model that only
    # learns token frequencies stops at the corpus's unigram entropy, 6.43 nats under this tokenizer: below 6.25 it
    # uses the context
    rows = [json.loads(line) for line in (runs / "tiny" / "metrics.jsonl").read_text().splitlines()]
    train, valid = [r for r in rows if r["kind"] == "train"], [r for r in rows if r["kind"] == "valid"]
    assert train[-1]["step"] == 60 and train[-1]["loss"] < 6.25 < math.log(8192)
    assert [r["step"] for r in valid] == [30, 60] and valid[-1]["loss"] < valid[0]["loss"] - 0.2
    assert all(r["tokens_per_s"] > 0 and r["tflops_per_gpu"] > 0 and r["mfu"] > 0 for r in train)
    assert list((runs / "tiny" / "tensorboard").glob("events.out.tfevents.*"))
    info = describe(runs / "tiny" / "checkpoints")                   # what step 6 (`checkpoint inspect`) prints
    assert (info["step"], info["layout"]["data"], info["parameters"]) == (60, 2, 5_245_184)
    assert info["tokens_seen"] == 60 * 16 * 256
    assert "done: step 60/60" in log
    # 8. SFT scored its tasks while it trained (training.eval_tasks): it learns to answer and end the turn
    # (measured: replies 32 tokens, the cap, → 2; held-out loss 2.20 at step 12 → 1.42 at step 24)
    sft = [json.loads(line) for line in (runs / "sft_tiny" / "metrics.jsonl").read_text().splitlines()]
    tasks = [r for r in sft if "task_accuracy" in r]
    assert [r["step"] for r in tasks] == [0, 12, 24]
    assert tasks[-1]["task_response_length"] < tasks[0]["task_response_length"] / 4
    sft_valid = [r for r in sft if r["kind"] == "valid" and "loss" in r]
    assert [r["step"] for r in sft_valid] == [12, 24] and sft_valid[-1]["loss"] < sft_valid[0]["loss"]
    # 9. GRPO ran its steps from the SFT model and reported the reward and its parts (the SFT model's replies are
    # in the answer format: measured format reward 0.80, end-of-turn 0.82), KL to the reference, held-out checks
    grpo = [json.loads(line) for line in (runs / "grpo_tiny" / "metrics.jsonl").read_text().splitlines()]
    step = [r for r in grpo if r["kind"] == "train"][-1]
    assert step["step"] == 4 and 0 < step["reward"] <= 1.3 and step["reward_format"] > 0.5 and step["kl"] >= 0
    assert [r["step"] for r in grpo if r["kind"] == "valid"] == [0, 4]
    # 10. the comparison table: three checkpoints; SFT answers in the tasks' format, the base model does not
    report = json.loads((runs / "eval.json").read_text())
    assert len(report["checkpoints"]) == 3
    assert re.search(r"task format \(all\)\s+0\.\d+\s+1\.000\s+1\.000", log), log[-3000:]
    # 11. each export loaded once by its consumer and compared with the checkpoint
    assert re.search(r"check \(transformers, f32, .*top-1 agreement 100\.00%, max \|Δ logit\| 0\.00e\+00", log)
    agreement = re.search(r"check \((?:llama\.cpp|transformers GGUF reader), q8_0, .*top-1 agreement ([\d.]+)%", log)
    assert agreement and float(agreement.group(1)) >= 95.0
    # 12. the OpenAI client got an answer from the server, which then drained and stopped
    assert re.search(r"openai client → .* \(\d+ tokens, finish (stop|length)", log)
    # 13. (and the end of step 5) the planner against the measured run: parameters exact
    assert len(re.findall(r"parameters\s+5,245,184\s+5,245,184\s+1\.000", log)) == 2
    for plot in ("tiny/loss.png", "sft_tiny/loss.png", "grpo_tiny/grpo.png", "corpus_lengths.png"):
        assert (runs / plot).stat().st_size > 10_000, plot

"""lm-evaluation-harness through our `myllm` backend (myllm_mc/evaluate/lm_eval_*.py).

Fast tier: the backend's log-likelihoods equal our own megatron cross-entropy scoring; bad input (unknown task,
missing data file, a layout generation cannot run at) is one line and exit 2 before a model loads.
Slow tier (lm_eval and transformers as subprocesses, ~15 s and ~1.5 min): `myllm-lm-eval` without a checkpoint in
--model_args is one line and exit 2 (lm_eval's CLI indexes its 14,000 tasks first); `myllm-lm-eval --model myllm` and
`lm_eval --model hf` on our HF export give the same per-document log-likelihoods (within 1e-4), the same
generations and the same accuracy on local multiple-choice, generation and rolling tasks; `myllm eval --lm-eval`
reports the CLI's figure.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluate.lm_eval_samples import compare, read_samples

pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed — install: pip install -e \".[lm_eval]\"")

REPO = Path(__file__).resolve().parents[2]
TEST_TASKS = REPO / "tests" / "evaluate" / "lm_eval_tasks"


@pytest.fixture
def no_model_load(monkeypatch):
    import myllm_mc.evaluate.cli as eval_cli

    def refuse(*_):
        raise AssertionError("a model was loaded for bad input")

    monkeypatch.setattr(eval_cli, "load_model_for_inference", refuse)


def _requests(pairs):
    from lm_eval.api.instance import Instance

    return [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]


def test_loglikelihood_equals_our_cross_entropy(fresh_model, eval_tokenizer):
    """log p(continuation | context) from the backend (logits → fp32 log-softmax) = −Σ megatron's per-token
    cross-entropy over the same tokens (evaluate.perplexity.token_nll, what `myllm eval` and training use); the
    rolling log-likelihood of a text = −Σ NLL of its disjoint windows; is_greedy agrees with the argmax."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from myllm_mc.evaluate import token_nll
    from myllm_mc.evaluate.lm_eval_backend import MyllmLM
    from myllm_mc.evaluate.perplexity import token_logits

    cfg, model = fresh_model
    lm = MyllmLM.from_loaded(model, eval_tokenizer, cfg, batch_size=3)
    pairs = [("It is a truth universally acknowledged,", " that a single man"), ("In the beginning", " God"),
             ("", "Emma Woodhouse, handsome, clever, and rich"), ("And God said, Let there be", " light: and"),
             ("x " * 80, " and the end")]                      # > seq_length 64: cut from the left
    got = lm.loglikelihood(_requests(pairs))
    for (context, continuation), (ll, greedy) in zip(pairs, got):
        ctx, cont = lm._encode_pair(context, continuation) if context else ([eval_tokenizer.eod],
                                                                            lm.tok_encode(continuation))
        ids = (ctx + cont)[-(cfg.model.seq_length + 1):]
        tokens, labels = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
        nll = token_nll(model, tokens, labels)[0, -len(cont):].double()
        assert abs(ll + float(nll.sum())) < 1e-4, (context[:20], ll, -float(nll.sum()))
        argmax = token_logits(model, tokens)[0, -len(cont):, :cfg.model.vocab_size].argmax(-1)
        assert greedy == bool((argmax == labels[0, -len(cont):]).all())

    text = " ".join(["the word of the LORD came unto me, saying"] * 12)     # several 64-token windows
    (rolled,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    ids = [eval_tokenizer.eod] + lm.tok_encode(text)
    total = 0.0
    for context, pred in map(make_disjoint_window, get_rolling_token_windows(ids[1:], ids[0], 64, 1)):
        window = context + pred
        nll = token_nll(model, torch.tensor([window[:-1]]), torch.tensor([window[1:]]))[0, -len(pred):]
        total -= float(nll.double().sum())
    assert len(ids) > 2 * 64 and abs(rolled - total) < 1e-3, (rolled, total)


def test_generate_until_is_the_generator_greedy_output(fresh_model, eval_tokenizer):
    """generate_until = the KV-cache Generator's greedy tokens, decoded without special tokens, cut at the first
    stop string; batched requests give what each gives alone."""
    from lm_eval.api.instance import Instance

    from myllm_mc.evaluate.lm_eval_backend import MyllmLM
    from myllm_mc.infer import Generator, SamplingParams

    cfg, model = fresh_model
    lm = MyllmLM.from_loaded(model, eval_tokenizer, cfg, batch_size=4)
    prompts = ["Question: What is 2 + 2?\nAnswer:", "It is a truth", "In the beginning God", "Emma"]
    kwargs = {"until": ["\n"], "max_gen_toks": 12, "do_sample": False}
    got = lm.generate_until([Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)])
    alone = Generator(model, eval_tokenizer, cfg.model, max_batch_size=1, seed=0)
    for prompt, text in zip(prompts, got):
        [done] = alone.generate([eval_tokenizer.encode(prompt)], SamplingParams(temperature=0, max_new_tokens=12))
        expected = eval_tokenizer.decode(done.token_ids, skip_special_tokens=True).split("\n")[0]
        assert text == expected, (prompt, text, expected)


def _base(eval_model):
    return ["eval", "configs/tiny.yaml", "--set", *eval_model["overrides"], "--checkpoint", eval_model["checkpoint"]]


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_missing_data_file_is_one_line(eval_model, tmp_path, capsys, no_model_load):
    from myllm_mc.cli import main

    (tmp_path / "gone.yaml").write_text((TEST_TASKS / "capitals_mc.yaml").read_text()
                                        .replace("capitals_mc", "gone_mc")
                                        .replace("tests/evaluate/lm_eval_tasks/capitals.jsonl",
                                                 str(tmp_path / "nowhere.jsonl")))
    assert main(_base(eval_model) + ["--lm-eval", "gone_mc", "--lm-eval-path", str(tmp_path)]) == 2
    line = _one_line(capsys)
    assert "gone_mc" in line and "nowhere.jsonl" in line and "not found" in line and "fix:" in line, line


def test_layout_without_generation_is_one_line(eval_model, capsys, no_model_load):
    from myllm_mc.cli import main

    for bad in (["parallel.context=2"], ["parallel.tensor=2", "parallel.sequence_parallel=true"]):
        assert main(_base(eval_model) + ["--set", *bad, "--lm-eval", "myllm_arithmetic_mc"]) == 2
        line = _one_line(capsys)
        assert "lm-eval" in line and "one process" in line and "fix:" in line, line


def test_unknown_task_is_one_line(eval_model, capsys, no_model_load):
    """Not among the local tasks, so lm_eval's own ~14,000 task names are indexed too before it is refused."""
    from myllm_mc.cli import main

    assert main(_base(eval_model) + ["--lm-eval", "myllm_arithmetic_mcq"]) == 2
    line = _one_line(capsys)
    assert "unknown lm-eval task 'myllm_arithmetic_mcq'" in line and "myllm_arithmetic_mc" in line, line


@pytest.mark.slow
def test_myllm_lm_eval_bad_model_args_is_one_line():
    """The lm_eval CLI with our model: no checkpoint in --model_args → one line, exit 2 (no traceback)."""
    out = subprocess.run([sys.executable, "-m", "myllm_mc.evaluate.lm_eval_cli", "--model", "myllm", "--model_args",
                          "config=configs/tiny.yaml", "--tasks", "myllm_arithmetic_mc", "--include_path",
                          "data/lm_eval"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("myllm-lm-eval: --model myllm needs --model_args"), \
        out.stderr[-2000:]


# --- parity with lm_eval's own HF backend (slow tier) ---------------------------------------------------------

PARITY_TASKS = "capitals_mc,capitals_gen,myllm_arithmetic_mc,myllm_arithmetic_gen,myllm_verses_ppl"


def _lm_eval(args, out_dir: Path) -> dict:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*args, "--tasks", PARITY_TASKS, "--include_path", str(TEST_TASKS),
           "--limit", "16", "--batch_size", "4", "--log_samples", "--output_path", str(out_dir)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    [results] = list(out_dir.rglob("results_*.json"))
    return json.loads(results.read_text())["results"]


@pytest.mark.slow
def test_parity_with_the_hf_backend_on_our_export(eval_model, tmp_path):
    from myllm_mc.config import load
    from myllm_mc.interop.hf_export import export_hf

    cfg = load("configs/tiny.yaml", eval_model["overrides"], world_size=1)
    export_hf(cfg, eval_model["checkpoint"], tmp_path / "hf")
    ours = _lm_eval([sys.executable, "-m", "myllm_mc.evaluate.lm_eval_cli", "--model", "myllm", "--model_args",
                     f"config=configs/tiny.yaml,checkpoint={eval_model['checkpoint']},"
                     f"set={';'.join(eval_model['overrides'])}"], tmp_path / "ours")
    theirs = _lm_eval([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                       f"pretrained={tmp_path / 'hf'},dtype=float32", "--device", "cpu"], tmp_path / "hf_out")
    per_doc = compare(read_samples(tmp_path / "ours"), read_samples(tmp_path / "hf_out"))
    print("per-document parity (max |Δ log-likelihood|, documents, generations that differ):", per_doc)
    assert set(per_doc) == set(PARITY_TASKS.split(","))
    for task, (worst, docs, differ) in per_doc.items():
        assert docs == 16 and worst < 1e-4 and differ == 0, (task, worst, docs, differ)
    for task in per_doc:
        for key, value in theirs[task].items():
            if isinstance(value, float) and "stderr" not in key and not math.isnan(value):
                assert abs(ours[task][key] - value) <= 1e-6 * max(1.0, abs(value)), (task, key, ours[task][key], value)

    # myllm eval --lm-eval, in process, reports the CLI's figure
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "myllm_mc.cli", "eval", "configs/tiny.yaml", "--set", *eval_model["overrides"],
           "--checkpoint", eval_model["checkpoint"], "--lm-eval", "myllm_arithmetic_mc", "--lm-eval-limit", "16",
           "--batch-size", "4", "--out", str(report)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "lm-eval myllm_arithmetic_mc acc" in out.stdout
    [row] = json.loads(report.read_text())["checkpoints"]
    figures = row["lm_eval"]["tasks"]["myllm_arithmetic_mc"]
    assert figures["acc"] == ours["myllm_arithmetic_mc"]["acc,none"]
    assert figures["acc_norm"] == ours["myllm_arithmetic_mc"]["acc_norm,none"]

"""Peer baselines: the plain-PyTorch model is MyLLM parameter for parameter; Megatron-LM gets the same config."""

import math

import pytest

from myllm_mc.bench.baseline_torch import PlainGPT, run_torch_baseline
from myllm_mc.bench.megatron_lm import iteration_times, megatron_lm_args, run_megatron_lm
from myllm_mc.config import load
from myllm_mc.plan.params import padded_vocab_size, parameter_breakdown


def test_plain_pytorch_model_has_exactly_the_planners_parameter_count():
    cfg = load("configs/tiny.yaml", ["model.vocab_size=8000"], world_size=1)    # padded to 8,064
    vocab = padded_vocab_size(cfg.model, 1)
    assert vocab == 8064
    model = PlainGPT(cfg.model, vocab)
    assert sum(p.numel() for p in model.parameters()) == parameter_breakdown(cfg.model, vocab).total
    assert model.embedding.weight.data_ptr() == model.state_dict()["embedding.weight"].data_ptr()


def test_plain_pytorch_baseline_trains_from_uniform_loss():
    cfg = load("configs/tiny.yaml", ["model.seq_length=64", "training.global_batch_size=2",
                                     "training.micro_batch_size=1"], world_size=1)
    row = run_torch_baseline(cfg, warmup=0, steps=2, compile=False)
    assert row["compiled"] is False and row["compile_note"] == "not tried"
    assert len(row["step_times"]) == 2 and row["tokens_per_s"] == pytest.approx(2 * 64 / row["step_time_median"])
    assert row["loss_first"] == pytest.approx(math.log(8192), abs=0.3)


def test_megatron_lm_command_line_carries_the_config():
    cfg = load("configs/myllm_1b.yaml", ["parallel.tensor=2", "parallel.sequence_parallel=true"], world_size=8)
    args = " ".join(megatron_lm_args(cfg, 12))
    for flag in ["--num-layers 28", "--hidden-size 1792", "--num-attention-heads 14", "--group-query-attention",
                 "--num-query-groups 2", "--kv-channels 128", "--ffn-hidden-size 4864", "--seq-length 8192",
                 "--swiglu", "--normalization RMSNorm", "--position-embedding-type rope", "--rotary-base 500000",
                 "--disable-bias-linear", "--micro-batch-size 1", "--global-batch-size 128", "--train-iters 12",
                 "--tensor-model-parallel-size 2", "--sequence-parallel", "--use-distributed-optimizer",
                 "--recompute-granularity selective", "--bf16", "--mock-data", "--vocab-size 65536"]:
        assert flag in args, flag
    assert "--untie-embeddings-and-output-weights" not in args        # MyLLM ties them


def test_megatron_lm_log_parsing_and_missing_checkout(tmp_path):
    log = "\n".join(f" [2026-01-01 00:00:0{i}] iteration        {i}/       4 | consumed samples: {16 * i} |"
                    f" elapsed time per iteration (ms): {100.0 * i:.1f} | throughput per GPU (TFLOP/s/GPU): 1.0 |"
                    for i in range(1, 5))
    assert iteration_times(log, warmup=2) == [0.3, 0.4]
    cfg = load("configs/tiny.yaml", world_size=1)
    row = run_megatron_lm(str(tmp_path), cfg, 1, 1, 1, tmp_path / "log")
    assert row["status"] == "failed" and "pretrain_gpt.py not found" in row["reason"]

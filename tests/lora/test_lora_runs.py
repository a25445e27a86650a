"""LoRA SFT and DPO on the training engine, in this process (one gloo rank): only the adapters train, the
checkpoint holds only them and points at the base, a resume is bit-exact, and DPO's adapter-off reference gives
ln 2 at step 0 without a second model."""

import math
import subprocess
import sys

import pytest
import torch
from lora_helpers import REPO, RUN, ParameterWatch, resume_copy, sft_config
from megatron.core import dist_checkpointing

from myllm_mc.config import load


def test_only_the_adapters_change(sft_run):
    watch = sft_run["watch"]
    frozen = [k for k, (_, grad) in watch.start.items() if not grad]
    trained = [k for k, (_, grad) in watch.start.items() if grad]
    assert trained and all(".lora." in k for k in trained) and len(trained) == 16      # A, B × 4 targets × 2 layers
    assert all(torch.equal(watch.start[k][0], watch.end[k][0]) for k in frozen)      # the base: bit-identical
    assert all(not torch.equal(watch.start[k][0], watch.end[k][0]) for k in trained if k.endswith(".B"))
    losses = sft_run["result"].losses
    print("lora sft losses:", [round(x, 4) for x in losses])
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_checkpoint_holds_the_adapters_and_points_at_the_base(sft_run, lora_base):
    step = sft_run["dir"] / "step_0000004"
    keys = set(dist_checkpointing.load_tensors_metadata(str(step)))
    model_keys = {k for k in keys if not k.startswith(("optimizer", "rng"))}
    assert model_keys and all(".lora." in k for k in model_keys), sorted(model_keys)[:5]
    adapter_bytes = sum(f.stat().st_size for f in step.rglob("*") if f.is_file())
    base_bytes = sum(f.stat().st_size for f in lora_base["base"].rglob("*") if f.is_file())
    print(f"LoRA checkpoint {adapter_bytes / 1024:.0f} KiB (adapters + Adam state) vs base {base_bytes / 1024:.0f} KiB")
    assert adapter_bytes < base_bytes / 3
    cli = [sys.executable, "-m", "myllm_mc.cli", "checkpoint", "inspect", str(sft_run["dir"])]
    shown = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"needs base   {lora_base['base']} (present" in shown.stdout
    moved = lora_base["base"].with_name("base-moved")
    lora_base["base"].rename(moved)
    try:
        missing = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=60)
    finally:
        moved.rename(lora_base["base"])
    assert missing.returncode == 1 and "is missing — fix: restore the base" in missing.stdout


def test_resume_is_bit_exact(sft_run, lora_base):
    """Steps 3-4 resumed from the step-2 checkpoint (adapters + Adam state + RNG, base from the pointer): the same
    losses and the same final adapters, bit for bit."""
    from myllm_mc.align.sft import run_sft

    target = lora_base["root"] / "resumed" / "ckpt"
    resume_copy(sft_run["dir"], "step_0000002", target)
    cfg = sft_config(lora_base, "resumed", "training.steps=4", "checkpoint.save_interval=100", "checkpoint.resume=auto")
    watch = ParameterWatch()
    resumed = run_sft(cfg, extra_callbacks=[watch])
    assert resumed.losses == sft_run["result"].losses[2:]
    straight = sft_run["watch"].end
    assert watch.end.keys() == straight.keys()
    assert all(torch.equal(watch.end[k][0], straight[k][0]) for k in straight)


def test_dpo_starts_at_ln2_with_the_adapters_off_reference(lora_base, monkeypatch, capsys):
    import myllm_mc.align.dpo as dpo

    def no_copy(*args, **kwargs):
        raise AssertionError("a frozen reference copy was built")
    monkeypatch.setattr(dpo, "build_frozen_model", no_copy)
    root = lora_base["root"]
    cfg = load(REPO / "configs" / "dpo_tiny.yaml", lora_base["model"] + RUN + [
        "training.steps=3", "align.max_records=40", f"checkpoint.init_from={lora_base['base']}",
        f"checkpoint.dir={root / 'dpo' / 'ckpt'}", f"logging.dir={root / 'dpo'}", "checkpoint.save_interval=100"],
        world_size=1)
    result = dpo.run_dpo(cfg)
    out = capsys.readouterr().out
    assert "dpo reference: the policy's base with its LoRA adapters disabled (no frozen copy in memory)" in out
    print(f"dpo step-0 loss {result.losses[0]:.7f} (ln 2 = {math.log(2):.7f})")
    assert abs(result.losses[0] - math.log(2)) < 1e-6
    assert result.losses[2] != pytest.approx(math.log(2), abs=1e-6)          # the adapters moved (step 1 has lr 0)


def test_grpo_samples_with_the_adapters_and_scores_the_base_as_reference(lora_base, monkeypatch, capsys):
    """Two GRPO steps: rollouts come from the adapted policy (sampler and trainer agree on their log-probs), the
    reference is the base with the adapters off (KL exactly 0 while B = 0), no frozen copy is built."""
    import myllm_mc.train.setup as setup

    def no_copy(*args, **kwargs):
        raise AssertionError("a frozen reference copy was built")
    monkeypatch.setattr(setup, "build_frozen_model", no_copy)
    from myllm_mc.align.grpo import run_grpo

    root = lora_base["root"]
    cfg = load(REPO / "configs" / "grpo_tiny.yaml", lora_base["model"] + RUN + [
        "training.steps=2", "training.global_batch_size=8", "align.max_records=40", "align.grpo.group_size=4",
        "align.grpo.max_new_tokens=6", "align.grpo.eval_prompts=0", "align.grpo.beta=0.1",
        f"checkpoint.init_from={lora_base['base']}", f"checkpoint.dir={root / 'grpo' / 'ckpt'}",
        f"logging.dir={root / 'grpo'}", "checkpoint.save_interval=100"], world_size=1)
    recorder = ParameterWatch()
    steps = []
    recorder.on_step_end = lambda trainer, record, control: steps.append(record.extra["metrics"])
    result = run_grpo(cfg, extra_callbacks=[recorder])
    assert "grpo reference: the policy's base with its LoRA adapters disabled" in capsys.readouterr().out
    assert result.exit_code == 0 and len(steps) == 2
    print("grpo with LoRA:", [(round(s["kl"], 8), round(s["logprob_diff"], 8)) for s in steps])
    assert steps[0]["kl"] == 0.0 and all(s["logprob_diff"] < 1e-4 for s in steps)

"""LoRA adapters out and back in: PEFT loads our export on our HF export of the base and computes our logits,
`myllm import peft` reads it back bit for bit, `export hf --merge` is a plain model transformers reads, and a LoRA
checkpoint is refused without --merge."""

import pytest
import torch
from lora_helpers import REPO

from myllm_mc.config import dump, load
from myllm_mc.interop import export_cli, import_cli
from myllm_mc.interop.weights import build_single, single_process
from myllm_mc.lora.apply import adapters_of
from myllm_mc.lora.checkpoints import load_weights

pytest.importorskip("peft", reason="peft: pip install -e '.[peft]'")


@pytest.fixture(scope="module")
def exported(sft_run, lora_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-interop")
    cfg = load(REPO / "configs" / "sft_tiny.yaml", lora_base["model"], world_size=1)
    (out / "config.yaml").write_text(dump(cfg))
    config = str(out / "config.yaml")
    assert export_cli.main(["hf", config, "--checkpoint", str(lora_base["base"]), "--out", str(out / "base_hf")]) == 0
    assert export_cli.main(["peft", config, "--checkpoint", str(sft_run["dir"]), "--out", str(out / "peft")]) == 0
    return {"cfg": cfg, "config": config, "out": out, "lora": sft_run["dir"]}


def _ours(cfg, checkpoint, ids):
    model = build_single(single_process(cfg))
    load_weights([model], checkpoint)
    model.eval()
    with torch.no_grad():
        logits = model(ids, torch.arange(ids.shape[1])[None].expand(ids.shape[0], -1), None)
    return model, logits[..., :cfg.model.vocab_size].float()


def _ids():
    return torch.randint(0, 1024, (2, 40), generator=torch.Generator().manual_seed(0))


def test_peft_loads_our_adapter_on_our_base_export(exported):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, ours = _ours(exported["cfg"], exported["lora"], _ids())
    hf = AutoModelForCausalLM.from_pretrained(exported["out"] / "base_hf", dtype=torch.float32)
    with torch.no_grad():
        base = hf(_ids()).logits.float()
    peft_model = PeftModel.from_pretrained(hf, exported["out"] / "peft").eval()
    with torch.no_grad():
        theirs = peft_model(_ids()).logits.float()
    diff, effect = (theirs - ours).abs().max().item(), (ours - base).abs().max().item()
    print(f"PEFT on the HF base vs ours: max |logit diff| {diff:.2e} (the adapters move logits by {effect:.2f})")
    assert effect > 0.1 and diff < 1e-4


def test_import_peft_is_bit_exact(exported, lora_base):
    out = exported["out"] / "imported"
    assert import_cli.main(["peft", str(exported["out"] / "peft"), "--config", exported["config"],
                            "--base", str(lora_base["base"]), "--out", str(out)]) == 0
    original, back = build_single(single_process(exported["cfg"])), None
    load_weights([original], exported["lora"])
    a = [t.clone() for x in adapters_of([original]) for t in (x.A, x.B)]
    back = build_single(single_process(exported["cfg"]))
    meta = load_weights([back], out)
    b = [t.clone() for x in adapters_of([back]) for t in (x.A, x.B)]
    assert meta["base"] == str(lora_base["base"].resolve()) and len(a) == len(b) == 16
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_merged_hf_export_equals_the_adapted_model(exported, capsys):
    from transformers import AutoModelForCausalLM

    config, out = exported["config"], exported["out"]
    assert export_cli.main(["hf", config, "--checkpoint", str(exported["lora"]), "--out", str(out / "no")]) == 2
    assert "holds LoRA adapters" in capsys.readouterr().err and not (out / "no").exists()
    assert export_cli.main(["hf", config, "--checkpoint", str(exported["lora"]), "--out", str(out / "merged"),
                            "--merge"]) == 0
    _, ours = _ours(exported["cfg"], exported["lora"], _ids())
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = merged(_ids()).logits.float()
    diff = (theirs - ours).abs().max().item()
    print(f"merged HF export vs the unmerged model: max |logit diff| {diff:.2e}")
    assert diff < 1e-4


def test_a_peft_adapter_with_separate_qkv_a_is_refused(exported, lora_base, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file
    peft_dir = tmp_path / "peft"
    shutil.copytree(exported["out"] / "peft", peft_dir)
    tensors = load_file(str(peft_dir / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"
    tensors[key] = tensors[key] + 1.0
    save_file(tensors, str(peft_dir / "adapter_model.safetensors"))
    assert import_cli.main(["peft", str(peft_dir), "--config", exported["config"], "--base", str(lora_base["base"]),
                            "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different A" in err[0]



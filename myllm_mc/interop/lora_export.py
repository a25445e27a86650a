"""LoRA adapters out of and into myllm: merged plain checkpoints, and Hugging Face PEFT's adapter format.

    merge_to_checkpoint(cfg, lora_ckpt, directory)   # base + adapters folded into plain weights (export hf --merge)
    export_peft(cfg, lora_ckpt, out)                 # adapter_config.json + adapter_model.safetensors
    import_peft(cfg, peft_dir, base, out)            # → an adapter checkpoint on `base` (out/step_0000000)

PEFT's module names are the HF model's (every family the registry converts — Llama, Mistral, Qwen2, Qwen3 — names
them alike): megatron's fused `linear_qkv` adapter becomes q_proj, k_proj and v_proj adapters that share A (B's
rows split as llama_layout splits the weight), `linear_fc1` becomes gate_proj and up_proj (B's two halves),
`linear_proj` o_proj and `linear_fc2` down_proj. The update B·A of each HF module equals the rows of the fused
update, so PEFT on the exported base computes what we compute. Importing fuses back; it needs the modules of one
fused layer to share A (ours always do; a PEFT adapter trained with separate q/k/v A's has a rank-3r fused update
and is refused in one line).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict

import torch
from megatron.core import dist_checkpointing
from safetensors.torch import load_file, save_file

from myllm_mc.checkpoint import base_pointer, resolve_weights, save_model, sharded_model_state, store
from myllm_mc.config import Config
from myllm_mc.config.schema import LoRAConfig
from myllm_mc.locking import NewOutput
from myllm_mc.lora import checkpoints as lora_checkpoints
from myllm_mc.lora.apply import adapters_of, apply_lora, gpt_model
from myllm_mc.model.llama_layout import LlamaShape, fuse_qkv, split_qkv
from myllm_mc.plan.lora import expand_targets

from .families import family_of
from .weights import ConversionError, build_single, single_process

# megatron target → [(part, HF module under model.layers.N)]
HF_MODULES = {"linear_qkv": [("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj")],
              "linear_proj": [("o", "self_attn.o_proj")],
              "linear_fc1": [("gate", "mlp.gate_proj"), ("up", "mlp.up_proj")],
              "linear_fc2": [("down", "mlp.down_proj")]}
_PARENT = {"linear_qkv": "self_attention", "linear_proj": "self_attention", "linear_fc1": "mlp", "linear_fc2": "mlp"}
PREFIX = "base_model.model.model.layers."


def _adapter_model(cfg: Config, checkpoint: str, merge: bool):
    """A TP=1/PP=1 model with the adapter checkpoint's base and adapters (merged or attached), and its lora meta."""
    model = build_single(single_process(cfg))
    try:
        meta = lora_checkpoints.load_weights([model], checkpoint, merge=merge)
    except FileNotFoundError as err:
        raise ConversionError(str(err).replace("checkpoint.init_from", "--checkpoint")) from None
    if meta is None:
        raise ConversionError(f"{checkpoint} holds no LoRA adapters — fix: export it with `myllm export hf` (no"
                              " --merge needed)")
    return model, meta


def merge_to_checkpoint(cfg: Config, checkpoint: str, directory) -> Path:
    """Write base + adapters, merged, as a plain model save (any reader, any layout). Returns `directory`."""
    model, _ = _adapter_model(cfg, checkpoint, merge=True)
    save_model([model], str(directory))
    return Path(directory)


def _split(target: str, b: torch.Tensor, shape: LlamaShape) -> Dict[str, torch.Tensor]:
    if target == "linear_qkv":
        return dict(zip("qkv", split_qkv(b, shape)))
    if target == "linear_fc1":
        return dict(zip(("gate", "up"), b.chunk(2, dim=0)))
    return {HF_MODULES[target][0][0]: b}


def export_peft(cfg: Config, checkpoint: str, out, base_name: str = "") -> str:
    """Write the adapters of `checkpoint` in PEFT's format. Returns a one-line summary."""
    family_of(cfg.model)                                       # refuses a config no HF family holds
    shape = LlamaShape.of(cfg.model)
    model, meta = _adapter_model(cfg, checkpoint, merge=False)
    lora = lora_checkpoints.lora_config(meta)
    tensors = {}
    for layer in gpt_model(model).decoder.layers:
        index = layer.layer_number - 1
        for target in expand_targets(lora.targets):
            adapter = getattr(getattr(getattr(layer, _PARENT[target]), target), "lora", None)
            if adapter is None:
                continue
            a, parts = adapter.A.detach().float(), _split(target, adapter.B.detach().float(), shape)
            for part, module in HF_MODULES[target]:
                tensors[f"{PREFIX}{index}.{module}.lora_A.weight"] = a.clone().contiguous()
                tensors[f"{PREFIX}{index}.{module}.lora_B.weight"] = parts[part].contiguous()
    modules = [m.rsplit(".", 1)[1] for t in expand_targets(lora.targets) for _, m in HF_MODULES[t]]
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": lora.rank, "lora_alpha": lora.alpha,
              "lora_dropout": lora.dropout, "target_modules": modules, "bias": "none", "fan_in_fan_out": False,
              "layers_to_transform": sorted(lora.layers) if lora.layers is not None else None,
              "base_model_name_or_path": base_name or meta.get("base"), "inference_mode": True,
              "init_lora_weights": True, "use_rslora": False, "use_dora": False, "modules_to_save": None}
    new = NewOutput(out, "--out", directory=True)       # one writer per --out; published whole or not at all
    out = new.out
    with new:
        save_file(tensors, str(new.tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (new.tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    size = sum(t.numel() * 4 for t in tensors.values())
    return (f"exported {len(tensors) // 2} PEFT LoRA modules (rank {lora.rank}, {size / 1e6:.2f} MB fp32) to {out};"
            f" base {config['base_model_name_or_path']}")


def _read_peft(directory: Path, cfg: Config):
    """(LoRAConfig, {(layer, target): (A, B)}) from a PEFT LoRA directory, or ConversionError naming what differs."""
    where = str(directory)
    try:
        config = json.loads((directory / "adapter_config.json").read_text())
    except (OSError, ValueError) as err:
        raise ConversionError(f"{where}: no readable adapter_config.json ({err}) — fix: pass a PEFT adapter"
                              " directory") from None
    for key, want in (("peft_type", "LORA"), ("use_dora", False), ("use_rslora", False), ("fan_in_fan_out", False)):
        if config.get(key, want) != want:
            raise ConversionError(f"{where}: {key}={config.get(key)!r} — fix: a plain LoRA adapter ({key}={want!r})")
    if config.get("bias", "none") != "none" or config.get("modules_to_save"):
        raise ConversionError(f"{where}: trains biases or whole modules (bias, modules_to_save) besides LoRA — fix:"
                              " export the adapter without them")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConversionError(f"{where}: per-module ranks/alphas (rank_pattern, alpha_pattern) — fix: one rank")
    tensors = load_file(str(directory / "adapter_model.safetensors"))
    by_module = {}
    for name, tensor in tensors.items():
        body = name[len(PREFIX):] if name.startswith(PREFIX) else None
        if body is None or not body.endswith((".lora_A.weight", ".lora_B.weight")):
            raise ConversionError(f"{where}: tensor {name!r} is not a LoRA factor of a decoder layer")
        index, rest = body.split(".", 1)
        module, factor = rest.rsplit(".", 2)[0], rest.rsplit(".", 2)[1]
        by_module.setdefault((int(index), module), {})[factor] = tensor.float()
    shape = LlamaShape.of(cfg.model)
    rank = int(config["r"])
    factors, targets, layers = {}, set(), set()
    for (index, module), pair in sorted(by_module.items()):
        target = next((t for t, parts in HF_MODULES.items() if module in [m for _, m in parts]), None)
        if target is None:
            raise ConversionError(f"{where}: LoRA on {module!r}, which has no megatron linear — fix: target only"
                                  f" {', '.join(m.rsplit('.', 1)[1] for p in HF_MODULES.values() for _, m in p)}")
        targets.add(target)
        layers.add(index)
        factors.setdefault((index, target), {})[module] = pair
    out = {}
    for (index, target), modules in factors.items():
        a_list = [p["lora_A"] for p in modules.values()]
        if any(not torch.equal(a, a_list[0]) for a in a_list[1:]):
            raise ConversionError(f"{where}: layer {index}'s {', '.join(m.rsplit('.', 1)[1] for m in modules)}"
                                  f" adapters have different A: megatron's fused {target} takes one A — fix: an"
                                  " adapter exported by myllm, or one trained with a shared A")
        parts = {part: modules.get(m, {}).get("lora_B") for part, m in HF_MODULES[target]}
        rows = _split(target, torch.zeros(_rows(target, shape), rank), shape)
        parts = {p: (b if b is not None else rows[p]) for p, b in parts.items()}
        if target == "linear_qkv":
            b = fuse_qkv(parts["q"], parts["k"], parts["v"], shape)
        elif target == "linear_fc1":
            b = torch.cat([parts["gate"], parts["up"]], dim=0)
        else:
            b = next(iter(parts.values()))
        out[(index, target)] = (a_list[0], b)
    all_layers = sorted(layers) == list(range(cfg.model.num_layers))
    lora = LoRAConfig(enabled=True, rank=rank, alpha=float(config.get("lora_alpha", rank)),
                      dropout=float(config.get("lora_dropout", 0.0)), targets=[t for t in HF_MODULES if t in targets],
                      layers=None if all_layers else sorted(layers))
    return lora, out


def _rows(target: str, shape: LlamaShape) -> int:
    q, kv = shape.heads * shape.head_dim, shape.groups * shape.head_dim
    return {"linear_qkv": q + 2 * kv, "linear_proj": shape.hidden, "linear_fc1": 2 * shape.ffn,
            "linear_fc2": shape.hidden}[target]


def import_peft(cfg: Config, directory, base: str, out) -> str:
    """A PEFT LoRA directory → an adapter checkpoint under `out` (a checkpoint root: out/step_0000000) whose base
    pointer is `base` (the checkpoint of the model the adapter was trained on). Returns a one-line summary."""
    directory, out = Path(directory), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConversionError(f"--out {out} already exists — fix: remove it or choose another path")
    lora, factors = _read_peft(directory, cfg)
    base_path = resolve_weights(str(base))
    model = build_single(single_process(cfg))
    lora_checkpoints.load_weights([model], base_path, merge=True)
    apply_lora([model], lora, seed=0)
    filled = 0
    with torch.no_grad():
        for layer in gpt_model(model).decoder.layers:
            index = layer.layer_number - 1
            for target in expand_targets(lora.targets):
                adapter = getattr(getattr(getattr(layer, _PARENT[target]), target), "lora", None)
                if adapter is None or (index, target) not in factors:
                    continue
                a, b = factors[(index, target)]
                if tuple(a.shape) != tuple(adapter.A.shape) or tuple(b.shape) != tuple(adapter.B.shape):
                    raise ConversionError(f"{directory}: layer {index} {target}: A {tuple(a.shape)}, B {tuple(b.shape)}"
                                          f" but the config's model needs {tuple(adapter.A.shape)},"
                                          f" {tuple(adapter.B.shape)} — fix: pass the base model's config")
                adapter.A.copy_(a)
                adapter.B.copy_(b)
                filled += 1
    if filled != len(adapters_of([model])):
        raise ConversionError(f"{directory}: adapters for {filled} of {len(adapters_of([model]))} layers")
    tmp = store.prepare_tmp(out, 0)
    dist_checkpointing.save(sharded_model_state([model], trainable_only=True), str(tmp))
    meta = {"step": 0, "config": cfg.model.name, "imported_from": str(directory.resolve()),
            **lora_checkpoints.run_meta(replace(lora, enabled=True), base_path)}
    final = store.commit(out, 0, meta)
    return (f"imported {filled} LoRA adapters (rank {lora.rank}, on {', '.join(lora.targets)}) from {directory} to"
            f" {final}; base {base_pointer.pointer(base_path)['base']}")

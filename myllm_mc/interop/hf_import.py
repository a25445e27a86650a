"""An HF directory of a supported family (Llama 3.x, Mistral, Qwen2.5, Qwen3, Qwen3-MoE,
Mixtral: families/) → our config (YAML) + a
megatron distributed checkpoint, at any layout later.

    OUT/config.yaml      the model group derived from config.json (other groups from --config, if given);
                         data.tokenizer and checkpoint.init_from point at the two folders below, so
                         `myllm finetune/train/generate OUT/config.yaml` start from the imported weights
    OUT/tokenizer/       tokenizer.json + tokenizer_config.json (special tokens, chat template)
    OUT/checkpoint/      megatron dist_checkpointing model save (loads at any TP/PP/VPP/CP)

The planner's parameter count for the derived config must equal the number of weights read, or nothing is written.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from myllm_mc.config import Config, dump, from_dict
from myllm_mc.config.loader import read_yaml
from myllm_mc.locking import NewOutput
from myllm_mc.model.llama_layout import LlamaShape, hf_names, hf_to_megatron

from .families import family_fields, family_for_hf
from .weights import ConversionError, save_full_state


@dataclass(frozen=True)
class Imported:
    out: Path
    config: Config
    parameters: int          # read from the file
    planned_parameters: int  # the planner's count for the derived config

    def summary(self) -> str:
        m = self.config.model
        return (f"imported {self.parameters:,} parameters (planner: {self.planned_parameters:,}) — {m.family},"
                f" {m.num_layers} layers,"
                f" hidden {m.hidden_size}, {m.num_attention_heads} heads / {m.num_query_groups} KV heads, vocab"
                f" {m.vocab_size:,} → {self.out}/config.yaml, {self.out}/checkpoint")


def model_fields_from_hf(config: dict, where: str) -> dict:
    """ModelConfig fields for an HF config.json of a supported family; anything else is refused in one line."""
    return family_fields(family_for_hf(config, where), config, where)


def read_safetensors(directory: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else ["model.safetensors"]
    tensors = {}
    for name in files:
        if not (directory / name).is_file():
            raise ConversionError(f"{directory / name}: missing — fix: copy every safetensors shard the index lists")
        try:
            tensors.update(load_file(str(directory / name)))
        except Exception as err:   # safetensors raises SafetensorError for truncated/corrupt files
            raise ConversionError(f"{directory / name}: unreadable ({str(err).splitlines()[0][:120]}) — fix: copy"
                                  " the file again (truncated or corrupt?)") from None
    return tensors


def derived_config(fields: dict, name: str, out: Path, base: Optional[str]) -> Config:
    data = read_yaml(base) if base else {}
    data.setdefault("model", {})
    if not base:
        data["model"]["precision"] = "fp32"
    data["model"].update({"name": name, **fields})
    data.setdefault("data", {})["tokenizer"] = str(out / "tokenizer" / "tokenizer.json")
    data.setdefault("checkpoint", {})["init_from"] = str(out / "checkpoint")
    for key in ("world_size", "data"):
        data.setdefault("parallel", {})[key] = "auto"
    return from_dict(data)


def write_imported(hf_tensors: Dict[str, torch.Tensor], fields: dict, name: str, out: str | Path,
                   tokenizer_dir: Path, base: Optional[str] = None, where: str = "") -> Imported:
    """Shared by HF and GGUF import: check names/shapes/counts, then write config, tokenizer and checkpoint."""
    from myllm_mc.model.build import padded_vocab_size
    from myllm_mc.plan.params import parameter_breakdown

    new = NewOutput(out, "--out", directory=True)      # one writer per --out; its own temporary (locking)
    out, tmp = new.out, new.tmp
    cfg = derived_config(fields, name, out, base)
    shape = LlamaShape.of(cfg.model)
    missing = [n for n in hf_names(shape) if n not in hf_tensors]
    if missing:
        raise ConversionError(f"{where}: tensor {missing[0]} missing ({len(missing)} in all) — fix: the file is"
                              " incomplete or not a Llama checkpoint")
    read = sum(hf_tensors[n].numel() for n in hf_names(shape))
    planned = parameter_breakdown(cfg.model).total
    if read != planned:
        raise ConversionError(f"{where}: {read:,} weights read but the planner counts {planned:,} for the derived"
                              " config — fix: check config.json against the tensors")
    state = hf_to_megatron({n: hf_tensors[n].float() for n in hf_names(shape)}, shape, padded_vocab_size(cfg))
    with new:
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        from myllm_mc.data.tokenizer import Tokenizer
        Tokenizer(tmp / "tokenizer" / "tokenizer.json")   # refuses a tokenizer our stages cannot use, before any weights are written
        save_full_state(cfg, state, tmp / "checkpoint")
        (tmp / "config.yaml").write_text(f"# imported from {where} by `myllm import`\n" + dump(cfg))
    return Imported(out=out, config=cfg, parameters=read, planned_parameters=planned)


def import_hf(path: str | Path, out: str | Path, base: Optional[str] = None) -> Imported:
    """Read PATH (config.json, safetensors, tokenizer files) and write OUT (see the module docstring)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{path}: no config.json — fix: pass an HF model directory")
    if not (path / "tokenizer.json").is_file():
        raise ConversionError(f"{path}: no tokenizer.json — fix: save the fast tokenizer beside the model"
                              " (tokenizer.save_pretrained)")
    fields = model_fields_from_hf(json.loads(config_file.read_text()), str(config_file))
    tensors = read_safetensors(path)
    with _tokenizer_subset(path) as tokenizer_dir:
        return write_imported(tensors, fields, path.resolve().name, out, tokenizer_dir, base, where=str(path))


class _tokenizer_subset:
    """A temporary folder with just the tokenizer files of an HF directory (not its weights)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        import tempfile
        self.tmp = tempfile.TemporaryDirectory(prefix="myllm-tokenizer-")
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            if (self.path / name).is_file():
                shutil.copyfile(self.path / name, Path(self.tmp.name) / name)
        return Path(self.tmp.name)

    def __exit__(self, *exc):
        self.tmp.cleanup()

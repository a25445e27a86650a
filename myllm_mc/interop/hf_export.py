"""Checkpoint (any layout) → a Hugging Face directory that `transformers` loads as its own class for the config's
model.family (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM,
MixtralForCausalLM; families/), no custom code.

    config.json, generation_config.json       the architecture and the stop tokens
    model.safetensors                         (model-0000N-of-0000M.safetensors + index above --max-shard-size)
    tokenizer.json, tokenizer_config.json,    the tokenizer with its special tokens and chat template
    special_tokens_map.json

Everything is written into a temporary sibling directory of this writer's own (`.OUT.tmp-PID`, under the lock
`OUT.lock`: one writer per output) and renamed into place at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

from myllm_mc.config import Config
from myllm_mc.locking import NewOutput
from myllm_mc.model.llama_layout import LlamaShape, megatron_to_hf

from .families import Family, family_hf_config, family_of
from .tokenizer_files import read_tokenizer_info, write_hf_tokenizer
from .weights import ConversionError, load_full_state

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
_HF_DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


@dataclass(frozen=True)
class HFExport:
    out: Path
    tensors: int
    parameters: int
    bytes: int
    shards: int

    def summary(self) -> str:
        return (f"exported {self.parameters:,} parameters ({self.tensors} tensors, {self.bytes / 1e6:.1f} MB in"
                f" {self.shards} safetensors file{'s' if self.shards > 1 else ''}) to {self.out}")


def hf_config(family: Family, cfg: Config, dtype: torch.dtype, token_ids: dict) -> dict:
    return {**family_hf_config(family, cfg.model), "torch_dtype": _HF_DTYPE_NAMES[dtype], **token_ids}


def write_safetensors(tensors: Dict[str, torch.Tensor], out: Path, max_shard_bytes: int) -> int:
    """One file, or shards of at most `max_shard_bytes` plus model.safetensors.index.json. Returns the shard count."""
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata=metadata)
        return 1
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        filename = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / filename), metadata=metadata)
        weight_map.update({name: filename for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return len(shards)


def prepare_out(out: str | Path) -> tuple[Path, Path]:
    """(final path, this writer's temporary `.OUT.tmp-PID`) for a writer of a new output directory: refuses, early,
    an output that exists or lies under a file; `publishing` then holds the output's lock while it writes."""
    new = NewOutput(out, "--out", directory=True)
    new.refuse_existing()
    return new.out, new.tmp


@contextmanager
def publishing(out: Path, tmp: Path):
    """Write into `tmp` under the lock of `out` (one writer per output; checked again under it); on success `tmp`
    becomes `out` in one rename, on any failure it is removed (locking.NewOutput)."""
    with NewOutput(out, "--out", directory=True) as new:
        if new.tmp != Path(tmp):
            raise ValueError(f"publishing({out}, {tmp}): not the temporary prepare_out gave")
        yield new.tmp


def export_hf(cfg: Config, checkpoint: str, out: str | Path, dtype: str = "f32",
              tokenizer: Optional[str] = None, max_shard_bytes: int = 2 * 1024 ** 3) -> HFExport:
    """Write the HF directory for `checkpoint` (trained with `cfg`; any parallel layout)."""
    if dtype not in DTYPES:
        raise ConversionError(f"--type {dtype}: HF export writes f32, f16 or bf16 — fix: pass one of those"
                              " (quantized types are for GGUF)")
    family = family_of(cfg.model)
    shape = LlamaShape.of(cfg.model)
    tokenizer = tokenizer or cfg.data.tokenizer
    info = read_tokenizer_info(tokenizer) if tokenizer else None
    new = NewOutput(out, "--out", directory=True)       # one writer per --out, refused in one line; see locking
    out, tmp = new.out, new.tmp
    with new:                                           # published whole by one rename, or nothing left
        tensors = {k: v.to(DTYPES[dtype]) for k, v in megatron_to_hf(load_full_state(cfg, checkpoint), shape).items()}
        shards = write_safetensors(tensors, tmp, max_shard_bytes)
        ids = {}
        if info is not None:
            from myllm_mc.data.tokenizer import Tokenizer
            tok = Tokenizer(info.path)
            ids = {"bos_token_id": tok.token_to_id(info.bos), "eos_token_id": tok.token_to_id(info.eos),
                   "pad_token_id": tok.token_to_id(info.pad) if info.pad else None}
            write_hf_tokenizer(info, tmp, cfg.model.seq_length)
            stops = list(dict.fromkeys([ids["eos_token_id"]] + ([tok.token_to_id(info.eot)] if info.eot else [])
                                       + [tok.eod]))
            (tmp / "generation_config.json").write_text(json.dumps(
                {"bos_token_id": ids["bos_token_id"], "eos_token_id": stops, "pad_token_id": ids["pad_token_id"],
                 "do_sample": False}, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(hf_config(family, cfg, DTYPES[dtype], ids), indent=2) + "\n")
    return HFExport(out=out, tensors=len(tensors), parameters=sum(t.numel() for t in tensors.values()),
                    bytes=sum(t.numel() * t.element_size() for t in tensors.values()), shards=shards)

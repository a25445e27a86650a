"""The family registry: one module per model family, looked up by HF model_type, GGUF architecture or our
model.family. Adding a family is adding its module, its line in FAMILIES and its row in docs/interop.md;
nothing in the loaders (hf_import, hf_export, gguf_export, gguf_import) changes.

    family = family_for_hf(config_json, where)      # refuses an unknown or unconvertible family in one line
    fields = family_fields(family, config_json, where)    # → ModelConfig fields (family included)
    config_json = family_hf_config(family, cfg.model)     # ← the architecture part of config.json
    family = family_of(cfg.model)                   # for export: refuses a config the family cannot hold
"""

from __future__ import annotations

from myllm_mc.config import ConfigError

from . import gemma3, llama, mistral, mixtral, qwen2, qwen3, qwen3_moe
from .common import Family, Refused, refuse
from .common import hf_config as family_hf_config
from .common import hf_fields as family_fields

FAMILIES = {f.name: f for f in (llama.FAMILY, mistral.FAMILY, qwen2.FAMILY, qwen3.FAMILY, qwen3_moe.FAMILY,
                                 mixtral.FAMILY)}
REFUSED: tuple[Refused, ...] = (gemma3.REFUSED,)
# mistral is written as llama; mixtral as llama with experts (family_for_gguf)
GGUF_ARCHES = {"llama": llama.FAMILY, "qwen2": qwen2.FAMILY, "qwen3": qwen3.FAMILY, "qwen3moe": qwen3_moe.FAMILY}

__all__ = ["FAMILIES", "GGUF_ARCHES", "Family", "family_for_hf", "family_for_gguf", "family_of", "family_fields",
           "family_hf_config"]


def _known() -> str:
    return ", ".join(sorted(t for f in FAMILIES.values() for t in f.hf_model_types))


def family_for_hf(config: dict, where: str) -> Family:
    model_type = config.get("model_type")
    arch = (config.get("architectures") or ["?"])[0]
    for family in FAMILIES.values():
        if model_type in family.hf_model_types:
            return family
    for refused in REFUSED:
        if model_type in refused.hf_model_types:
            raise refused.error(where, model_type)
    raise refuse(where, f"model_type {model_type!r} ({arch}) is not a supported family",
                 f"import one of model_type {_known()} (docs/interop.md lists them)")


def family_for_gguf(arch: str, where: str, experts: int = 0) -> Family:
    """The family of a GGUF's general.architecture (`llama` with experts is Mixtral, as llama.cpp's converter
    writes it); refused when the file has experts and the family none, or the other way round."""
    if arch in GGUF_ARCHES:
        family = mixtral.FAMILY if arch == "llama" and experts else GGUF_ARCHES[arch]
        if bool(experts) != (family.moe_fields is not None):
            raise refuse(where, f"{arch}.expert_count={experts} but {arch} files are"
                         f" {'mixture-of-experts' if family.moe_fields else 'dense'}", "the file is damaged or of"
                         " another architecture")
        return family
    for refused in REFUSED:
        if arch in refused.gguf_arches:
            raise refused.error(where)
    raise refuse(where, f"general.architecture={arch!r} is not one this importer reads",
                 f"import a GGUF of architecture {', '.join(GGUF_ARCHES)}")


def family_of(model_cfg) -> Family:
    """The family a config exports as; refused when the config has what the family's layout cannot hold."""
    m = model_cfg
    if m.family not in FAMILIES:
        raise ConfigError(f"model.family={m.family!r} is not a family interop knows — fix: one of"
                          f" {', '.join(FAMILIES)}")
    family = FAMILIES[m.family]
    problems = family.problems(m)
    basics = [f"{name}={value}" for name, value, want in (
        ("model.activation", m.activation, "swiglu"), ("model.position_embedding", m.position_embedding, "rope"),
        ("model.normalization", m.normalization, "RMSNorm"), ("model.add_bias", m.add_bias, False)) if value != want]
    if basics or problems:
        want = ", ".join(f"{k}={v}" for k, v in family.fixed.items())
        raise ConfigError(f"{', '.join(basics + problems)}: HF/GGUF {family.name} needs swiglu, rope, RMSNorm, no"
                          f" add_bias and {want} — fix: convert a model with that architecture, or set model.family")
    return family

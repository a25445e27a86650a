"""What a checkpoint was trained with (model shape, tokenizer fingerprint), checked before a resume.

Why: loading an 8,192-row embedding into a 16,384-row model leaves half of it zero; resuming with a different
tokenizer of the same size trains on ids that mean other strings (the loss jumps). Both load "successfully", so
they are refused here, in one line naming the fields. A deliberate tokenizer change is allowed with
`checkpoint.allow_tokenizer_change=true`; a shape change is never resumed. Growing the vocabulary is the one
deliberate shape change: `checkpoint.allow_vocab_growth=true` with `checkpoint.init_from` (see `vocab_growth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from myllm_mc.config.validate import moe_layer_pattern
from myllm_mc.data.tokenizer import Tokenizer

from .errors import CheckpointError

SHAPE_FIELDS = ("num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "kv_channels",
                "ffn_hidden_size", "vocab_size")
# fields that change what the weights compute without changing a tensor's shape (a different rotary_base or
# norm_epsilon loads "successfully" and generates other text), and MoE routing; `model.X` or `model.moe.X`
SEMANTIC_FIELDS = ("normalization", "norm_epsilon", "activation", "position_embedding", "rotary_base", "rope_scaling",
                   "rope_scaling_factor", "add_bias", "qkv_bias", "qk_norm", "tie_embeddings", "moe.top_k",
                   "moe.router_score", "moe.router_pre_softmax")


def model_shape(cfg) -> Dict[str, int]:
    shape = {name: getattr(cfg.model, name) for name in SHAPE_FIELDS}
    moe = cfg.model.moe
    if moe.num_experts:              # only MoE checkpoints carry these, so dense records stay as they were
        shape.update(moe_num_experts=moe.num_experts,
                     moe_ffn_hidden_size=moe.ffn_hidden_size or cfg.model.ffn_hidden_size,
                     moe_shared_expert_ffn_hidden_size=moe.shared_expert_ffn_hidden_size,
                     moe_layer_pattern=moe_layer_pattern(cfg.model))
    return shape


def tokenizer_fingerprint(path: Optional[str]) -> Optional[dict]:
    if not path:
        return None
    ids = Tokenizer(path).unique_identifiers
    return {"sha256": ids["sha256"], "vocab_size": ids["vocab_size"]}


def model_semantics(cfg) -> Dict[str, object]:
    found = {}
    for name in SEMANTIC_FIELDS:
        if name.startswith("moe.") and not cfg.model.moe.num_experts:
            continue                        # routing means nothing to a dense model
        value = cfg.model
        for part in name.split("."):
            value = getattr(value, part, None)
        found[name] = list(value) if isinstance(value, tuple) else value
    return found


def record(cfg) -> dict:
    """The meta entries saved with every checkpoint."""
    return {"model_shape": model_shape(cfg), "model_config": model_semantics(cfg),
            "tokenizer": tokenizer_fingerprint(cfg.data.tokenizer)}


def is_growth(meta: dict, cfg) -> bool:
    """Only model.vocab_size differs, and it grew."""
    saved = meta.get("model_shape") or {}
    now = model_shape(cfg)
    return (saved.get("vocab_size", now["vocab_size"]) < now["vocab_size"]
            and all(saved[k] == v for k, v in now.items() if k != "vocab_size" and k in saved))


def mismatches(meta: dict, cfg, growth_ok: bool = False, tokenizer: bool = True, semantics: bool = False,
               tokenizer_path: Optional[str] = None) -> List[str]:
    found = []
    saved_shape = meta.get("model_shape") or {}
    for name, value in model_shape(cfg).items():
        if name == "vocab_size" and growth_ok and is_growth(meta, cfg):
            continue
        if name in saved_shape and saved_shape[name] != value:
            found.append(f"model.{name} {saved_shape[name]} → {value}")
    experts = saved_shape.get("moe_num_experts", 0), model_shape(cfg).get("moe_num_experts", 0)
    if experts[0] != experts[1] and 0 in experts:      # dense ↔ MoE: one side has no MoE entries at all
        found.append(f"model.moe.num_experts {experts[0]} → {experts[1]}")
    saved_config = (meta.get("model_config") or {}) if semantics else {}
    for name, value in model_semantics(cfg).items():
        if name in saved_config and saved_config[name] != value:
            found.append(f"model.{name} {saved_config[name]} → {value}")
    saved_tok = meta.get("tokenizer")
    tokenizer_path = tokenizer_path or cfg.data.tokenizer
    if (tokenizer and saved_tok and tokenizer_path and Path(tokenizer_path).is_file()
            and not getattr(cfg.checkpoint, "allow_tokenizer_change", False)):
        now = tokenizer_fingerprint(tokenizer_path)
        if now and now["sha256"] != saved_tok["sha256"]:
            found.append(f"data.tokenizer {saved_tok['sha256'][:12]} → {now['sha256'][:12]} (another tokenizer)")
    return found


def check(meta: dict, cfg, where: str, init: bool = False) -> None:
    """Resume (`init=False`): any shape or tokenizer change refused. init_from (weights for fine-tuning or a new
    tokenizer): the shape only, and vocabulary growth allowed when opted in."""
    growth_ok = init and getattr(cfg.checkpoint, "allow_vocab_growth", False)
    found = mismatches(meta, cfg, growth_ok, tokenizer=not init)   # init_from: a new tokenizer is the usual case
    if not found:
        return
    shape = [f for f in found if f.startswith("model.")]
    fix = ("use the config the checkpoint was trained with (myllm checkpoint inspect shows it)" if shape else
           "use the tokenizer it was trained with, or --set checkpoint.allow_tokenizer_change=true if the change "
           "is deliberate")
    if shape and is_growth(meta, cfg):
        fix = ("to grow the vocabulary deliberately, start from its weights: checkpoint.init_from=<it> (not "
               "resume) with checkpoint.allow_vocab_growth=true" if not init else
               "--set checkpoint.allow_vocab_growth=true if the growth is deliberate (new rows = the mean of the "
               "old ones)")
    raise CheckpointError(f"cannot {'initialise' if init else 'resume'} from {where}: it was saved with a different "
                          f"{'model shape' if shape else 'tokenizer'}: {'; '.join(found)} — fix: {fix}")


def check_reading(meta: dict, cfg, where, tokenizer: Optional[str] = None) -> None:
    """generate, chat, eval, serve and export: the config's model (shape, and what the weights compute: RoPE base,
    norm epsilon, ... when the checkpoint records it) and the tokenizer (`tokenizer`, default data.tokenizer) must
    be the checkpoint's. A mismatch used to load and answer in other words (or export a GGUF whose tokenizer does
    not fit its embedding); now CheckpointError, one line naming each field."""
    found = mismatches(meta, cfg, semantics=True, tokenizer_path=tokenizer)
    if not found:
        return
    raise CheckpointError(f"{where} was saved with another {'tokenizer' if found[0].startswith('data.') else 'model'}"
                          f": {'; '.join(found)} — fix: use the config and tokenizer it was trained with (myllm "
                          "checkpoint inspect shows them), or drop the --set or --tokenizer that changes them")


def check_checkpoint(cfg, directory, tokenizer: Optional[str] = None) -> None:
    """`check_reading` on a resolved checkpoint directory's meta (a bare model save has none: nothing to check)."""
    from . import store

    directory = Path(directory)
    if (directory / store.META_FILE).is_file():
        check_reading(store.read_meta(directory), cfg, directory, tokenizer)

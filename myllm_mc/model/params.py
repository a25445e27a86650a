"""Parameter counts of built megatron-core models, by module kind.

The keys match the planner's `myllm_mc.plan.params.parameter_breakdown`, so a test can check the formula
against the real module tree: embedding, attention, mlp, norms, output_layer, total.
"""

from __future__ import annotations

KEYS = ("embedding", "attention", "mlp", "norms", "output_layer", "total")

# module-name fragments → kind, first match wins
_KINDS = (
    ("embedding.", "embedding"),
    ("self_attention.", "attention"),
    ("mlp.", "mlp"),
    ("layernorm", "norms"),
    ("output_layer.", "output_layer"),
)


def _kind(name: str) -> str:
    for fragment, kind in _KINDS:
        if fragment in name:
            return kind
    raise ValueError(f"parameter {name!r} belongs to no known module kind — update myllm_mc.model.params._KINDS")


def parameter_counts(model) -> dict:
    """Counts of this rank's parameters (one GPTModel or the list of its virtual-stage chunks).

    A tied output layer shares the embedding's weight and counts once, under embedding; on a pipeline's last
    stage megatron keeps a synchronised copy marked `shared_embedding`, which is not counted again.
    Layer norms fused into TE linears (`layer_norm_weight`) count as norms.
    """
    chunks = model if isinstance(model, (list, tuple)) else [model]
    counts = dict.fromkeys(KEYS, 0)
    seen = set()
    for chunk in chunks:
        for name, param in chunk.named_parameters():
            if id(param) in seen or getattr(param, "shared_embedding", False) and "output_layer" in name:
                continue
            seen.add(id(param))
            kind = "norms" if "layer_norm_weight" in name else _kind(name)
            counts[kind] += param.numel()
    counts["total"] = sum(counts[k] for k in KEYS if k != "total")
    return counts

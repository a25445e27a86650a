"""LoRA on megatron-core: adapters applied to a built model's parallel linear layers (the model code is untouched).

    check_lora(cfg)                    # torch-free: one-line refusals before any process starts
    from myllm_mc.lora.apply import apply_lora, adapters_disabled, merge_adapters
    from myllm_mc.lora.checkpoints import load_with_adapters, lora_meta

Modules: `checks` (config refusals, no torch), `adapter` (the LoRA module and its tensor-parallel forward),
`apply` (attach, freeze, disable, merge, the TP gradient sum), `checkpoints` (the pointer to the base, loading a
base plus adapters for inference and export). Nothing here imports torch at package import time.
"""

from .checks import check_lora

__all__ = ["check_lora"]

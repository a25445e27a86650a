"""`myllm <stage>`: one entry point, stages in the order of the chain.

Each stage lives in its own module and exposes `main(argv) -> int`; this file only dispatches, so
`myllm --help` and `myllm plan` never import torch or megatron-core.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import signal
import sys
import warnings
from typing import Optional, Sequence

from myllm_mc import __version__
from myllm_mc.config.errors import ConfigError
from myllm_mc.errors import MyllmError, fail

# (name, "module:function", one-line help) in the order of the chain
STAGES = [
    ("plan", "myllm_mc.plan.cli:main", "derive and explain a configuration: parameters, FLOPs, memory, time, KV cache"),
    ("config", "myllm_mc.preflight:main", "show a config in full after overrides, or check it (`config show`)"),
    ("data", "myllm_mc.data.cli:main", "corpus statistics (`data stats`): documents, bytes, tokens, bytes per token"),
    ("tokenizer", "myllm_mc.data.tokenizer_cli:main", "train a byte-level BPE tokenizer (`tokenizer train`)"),
    ("preprocess", "myllm_mc.data.preprocess_cli:main", "tokenize corpora into indexed .bin/.idx shards"),
    ("train", "myllm_mc.train.cli:main", "pretrain on megatron-core with any parallel layout"),
    ("checkpoint", "myllm_mc.checkpoint.cli:main", "inspect a checkpoint (`checkpoint inspect DIR`)"),
    ("finetune", "myllm_mc.align.cli:main", "SFT, DPO and GRPO on a pretrained checkpoint"),
    ("eval", "myllm_mc.evaluate.cli:main",
     "perplexity, bits per byte, task accuracy, multiple-choice log-likelihood; compare checkpoints"),
    ("generate", "myllm_mc.infer.generate_cli:main", "prefill + decode with a KV cache, sampling"),
    ("chat", "myllm_mc.infer.chat_cli:main", "talk to a checkpoint in the terminal (chat template, streaming)"),
    ("export", "myllm_mc.interop.export_cli:main", "convert checkpoints (HF safetensors, GGUF), quantize"),
    ("import", "myllm_mc.interop.import_cli:main", "import HF safetensors or GGUF models (Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, Mixtral) as config + checkpoint"),
    ("serve", "myllm_mc.serve.cli:main", "a local HTTP server for generation"),
    ("benchmark", "myllm_mc.bench.cli:main", "measure tokens/s and MFU of a layout, sweep layouts"),
]

# a stage option served by a module on a higher floor than the stage's own: the planner's report for an HF
# model needs the family registry (interop), which plan/ may not import
ROUTES = {("plan", "--from-hf"): "myllm_mc.interop.plan_hf:main"}

NOT_BUILT_EXIT = 3


def _usage() -> str:
    width = max(len(name) for name, _, _ in STAGES)
    lines = ["usage: myllm <stage> [options]   (myllm <stage> --help for a stage's options)", "",
             "stages, in the order of the chain (documents → tokens → sequences → loss → updates → responses):"]
    lines += [f"  {name:<{width}}  {help_}" for name, _, help_ in STAGES]
    return "\n".join(lines)


def _resolve(target: str):
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (err.name == module_name or module_name.startswith(err.name + ".")):
            return None  # the stage's module does not exist yet
        raise
    return getattr(module, func_name)


def _quiet_third_party() -> None:
    """megatron-core warns at import that Apex/TE are absent (expected on CPU; the GPU path reports what it uses)
    and logs dataset-cache chatter at INFO; a CLI user needs neither."""
    warnings.filterwarnings("ignore", message=r".*(Transformer Engine and Apex are|Apex is) not installed")
    warnings.filterwarnings("ignore", message=r"full scope is deprecated")
    # megatron-core 0.16.1 calls collectives that torch 2.13 deprecated, and reads `.grad` of non-leaf views
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The \.grad attribute of a Tensor that is not a leaf Tensor")
    # dist_checkpointing's own load path calls torch APIs that torch 2.13 deprecated (not ours to change)
    warnings.filterwarnings("ignore", message=r"`load_state_dict` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Please use DTensor instead and we are deprecating ShardedTensor",
                            category=FutureWarning)

    logging.getLogger("megatron").setLevel(logging.WARNING)
    # "Building a BlendedDataset for a single MegatronDataset": a WARNING for the common one-corpus case
    logging.getLogger("megatron.core.datasets.blended_megatron_dataset_builder").setLevel(logging.ERROR)


def main(argv: Optional[Sequence[str]] = None) -> int:
    if hasattr(signal, "SIGPIPE") and argv is None:   # `myllm plan ... | head` ends quietly, like any Unix tool
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"myllm_mc {__version__}")
        return 0
    stage, rest = argv[0], argv[1:]
    table = {name: target for name, target, _ in STAGES}
    if stage not in table:
        close = difflib.get_close_matches(stage, table, n=1)
        hint = f" — did you mean '{close[0]}'?" if close else " — see `myllm --help`"
        print(f"myllm: unknown stage '{stage}'{hint}", file=sys.stderr)
        return 2
    target = next((t for (name, option), t in ROUTES.items() if name == stage and option in rest), table[stage])
    func = _resolve(target)
    if func is None:
        print(f"myllm {stage}: not built yet in this version of myllm_mc (see README, 'Status')", file=sys.stderr)
        return NOT_BUILT_EXIT
    _quiet_third_party()
    try:
        return int(func(rest) or 0)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except MyllmError as err:                  # any stage's expected failure: its one line, exit 2
        return fail(f"myllm {stage}", str(err), 2, err)
    except KeyboardInterrupt:                  # Ctrl-C outside training (which saves and exits 130 itself)
        print(f"myllm {stage}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

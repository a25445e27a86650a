"""Generation on megatron-core: KV-cache prefill/decode, per-request sampling, batching and streaming, and the
`myllm generate` / `myllm chat` CLIs. The server (myllm_mc.serve) and format conversion (myllm_mc.interop) build
on it.

    from myllm_mc.infer import inference_config, load_generator, SamplingParams
    gen = load_generator(inference_config("configs/tiny.yaml"), "runs/tiny/checkpoints")
    [c] = gen.generate([gen.tokenizer.encode("Once upon a time")], SamplingParams(temperature=0, max_new_tokens=32))
    c.text, c.token_ids, c.finish_reason, c.time_to_first_token_s

See generator.py for the engine (submit/step/cancel for servers, stream() for SSE) and docs/inference.md.
"""

from .generator import GenerationStats, Generator
from .loader import inference_config, load_generator, load_model_for_inference, load_tokenizer, resolve_checkpoint
from .requests import Completion, StreamEvent
from .sampling import GenerationError, SamplingParams

__all__ = ["Generator", "GenerationStats", "SamplingParams", "GenerationError", "Completion", "StreamEvent",
           "inference_config", "load_generator", "load_model_for_inference", "load_tokenizer",
           "resolve_checkpoint"]

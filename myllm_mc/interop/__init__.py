"""Checkpoints in and out of other programs' formats: HF safetensors and GGUF export/import (f32, f16, bf16,
Q8_0, Q4_0, Q4_1), the tensor-layout maps between megatron-core and Llama-shaped models, tokenizer files, and
`--check` (the export loaded by transformers or llama.cpp and compared with the checkpoint). See docs/interop.md."""

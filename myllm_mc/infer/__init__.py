"""Inference side of the chain: generation, checkpoint conversion (HF safetensors, GGUF), quantization, serving."""

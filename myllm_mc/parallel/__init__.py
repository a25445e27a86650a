"""Process groups, launchers and the CPU bridge for megatron-core.

`init_distributed(cfg)` / `destroy()` live in `state`; `hardware` is the one place that picks the backend and
the layer spec; `cpu_backend` bridges megatron-core's CUDA assumptions when CUDA is absent.
"""

"""Throughput and MFU benchmarking of the real training step (`myllm benchmark`, tools/benchmark.py).

    measure.run_benchmark(cfg, warmup)   one run of run_training, timed → tokens/s, TFLOP/s, MFU, shares, memory
    sweep.plan_sweep(...)                layout combinations, invalid ones skipped with their ConfigError
    worker.run_plan(plan)                every run of a sweep inside one process group (one torchrun launch)
    baseline_torch / megatron_lm         peer baselines: plain PyTorch, and Megatron-LM's pretrain_gpt.py
    report                               console lines, CSV/JSON tables, the PNG chart
"""

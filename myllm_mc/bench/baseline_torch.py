"""Peer baseline (a): the same model as plain PyTorch — no megatron-core — timed on the same batch and sequence.

Why: a ratio against a model anyone can read tells whether megatron-core's machinery (DDP buffers, the schedule,
the distributed optimizer) costs or pays on this machine. Same architecture as MyLLM (RMSNorm pre-norm, fused QKV
with grouped-query attention through SDPA, rotary embeddings, SwiGLU, tied embedding/output, no biases), same
padded vocabulary, micro-batch and gradient accumulation to the same global batch, AdamW with the same
hyper-parameters and clipping. `torch.compile` is tried first; where it fails the eager model is timed and the
reason is reported. Mixed precision on GPU is torch.autocast (bf16), the plain-PyTorch way.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from myllm_mc.config import Config
from myllm_mc.parallel.hardware import cuda_available  # hardware is decided in parallel/, once
from myllm_mc.plan.params import padded_vocab_size


def rotary_tables(seq_length: int, head_dim: int, base: float, device=None):
    """cos/sin of position × inverse frequency, shaped (1, 1, seq, head_dim) for the rotate-half convention."""
    inverse = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq_length, device=device, dtype=torch.float32), inverse)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos()[None, None], angles.sin()[None, None]


def apply_rotary(x, cos, sin):
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-second, first], dim=-1) * sin.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, groups: int, head_dim: int):
        super().__init__()
        self.heads, self.groups, self.head_dim = heads, groups, head_dim
        self.qkv = nn.Linear(hidden, (heads + 2 * groups) * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x, cos, sin):
        batch, seq, _ = x.shape
        q, k, v = self.qkv(x).split([self.heads * self.head_dim, self.groups * self.head_dim,
                                     self.groups * self.head_dim], dim=-1)
        q = q.view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, seq, self.groups, self.head_dim).transpose(1, 2)
        v = v.view(batch, seq, self.groups, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.groups != self.heads)
        return self.out(y.transpose(1, 2).reshape(batch, seq, self.heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.attention_norm = nn.RMSNorm(m.hidden_size, eps=m.norm_epsilon)
        self.attention = Attention(m.hidden_size, m.num_attention_heads, m.num_query_groups, m.kv_channels)
        self.mlp_norm = nn.RMSNorm(m.hidden_size, eps=m.norm_epsilon)
        self.mlp = SwiGLU(m.hidden_size, m.ffn_hidden_size)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class PlainGPT(nn.Module):
    """MyLLM in plain PyTorch, read top to bottom: embed → blocks → norm → logits through the tied embedding."""

    def __init__(self, model_cfg, padded_vocab: int):
        super().__init__()
        m = model_cfg
        self.embedding = nn.Embedding(padded_vocab, m.hidden_size)
        self.blocks = nn.ModuleList(Block(m) for _ in range(m.num_layers))
        self.final_norm = nn.RMSNorm(m.hidden_size, eps=m.norm_epsilon)
        cos, sin = rotary_tables(m.seq_length, m.kv_channels, m.rotary_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=m.init_std)

    def forward(self, tokens):
        x = self.embedding(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin)
        return F.linear(self.final_norm(x), self.embedding.weight)


def _optimizer(cfg: Config, model: nn.Module):
    o = cfg.optimizer
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and (o.decay_embeddings or "embedding" not in n)]
    rest = [p for n, p in model.named_parameters() if not any(p is d for d in decay)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)


def run_torch_baseline(cfg: Config, warmup: int, steps: int, compile: bool = True, threads: int | None = None) -> dict:
    """Time `steps` optimizer steps (after `warmup`) of PlainGPT on one device at cfg's global batch."""
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if cuda_available() else "cpu")
    torch.manual_seed(cfg.training.seed)
    vocab = padded_vocab_size(cfg.model, 1)
    result = {"name": "plain PyTorch (SDPA, no megatron-core)", "compiled": False, "compile_note": "not tried"}
    if compile:
        try:
            result.update(_timed_run(cfg, vocab, device, warmup, steps, compiled=True))
            result.update(compiled=True, compile_note="torch.compile (inductor)")
            return result
        except Exception as err:   # inductor needs a C++ toolchain on CPU, Triton on GPU; report why, time eager
            result["compile_note"] = f"torch.compile failed, eager instead: {type(err).__name__}: " \
                                     f"{(str(err).strip().splitlines() or [''])[0][:200]}"
            torch._dynamo.reset()
    result.update(_timed_run(cfg, vocab, device, warmup, steps, compiled=False))
    return result


def _timed_run(cfg: Config, vocab: int, device, warmup: int, steps: int, compiled: bool) -> dict:
    t, m = cfg.training, cfg.model
    model = PlainGPT(m, vocab).to(device)
    forward = torch.compile(model) if compiled else model
    optimizer = _optimizer(cfg, model)
    accumulation = t.global_batch_size // t.micro_batch_size
    generator = torch.Generator(device="cpu").manual_seed(t.seed)
    data = torch.randint(4, m.vocab_size, (accumulation, t.micro_batch_size, m.seq_length + 1),
                         generator=generator).to(device)
    autocast = device.type == "cuda" and m.precision in ("bf16", "fp8")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(warmup + steps):
        start = time.perf_counter()
        total = 0.0
        for micro in data:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = forward(micro[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), micro[:, 1:].reshape(-1)) / accumulation
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(total))              # .item() waits for the device: the step is really over
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"step_times": times, "step_time_median": median, "tokens_per_s": cfg.tokens_per_step / median,
            "loss_first": losses[0], "parameters": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads(), "device": device.type,
            "memory_max": int(torch.cuda.max_memory_allocated()) if device.type == "cuda" else None}

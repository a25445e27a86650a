"""GRPO (Shao et al. 2024, DeepSeekMath) with verifiable rewards, as an objective of the shared engine.

Each optimizer step of `iterations` (μ) starts a rollout when step % μ == 0 (`GRPOObjective.prepare`):
    prompts of this DP rank → G completions each, sampled from the policy itself (rollout.py) with their
    log-probs → rewards (data/tasks registry) → group-relative advantages → micro-batches
    → the frozen reference's log-probs (a forward-only pass of megatron's schedule, as DPO's).
The step (`forward_step` / `loss`): the policy's log-probs of the sampled tokens, the clipped ratio to the
log-probs at the start of the rollout, the k3 KL to the reference, aggregated per token, per sequence or
with Dr. GRPO's constant (grpo_loss.py has every formula). The old log-probs are the trainer's own at the first
iteration (ratio = 1 exactly there), kept in the micro-batch for the later ones.

The sampler/trainer check: at the first iteration of every rollout the trainer's log-probs are compared with
the sampler's; mean and max |difference| are logged, and `SamplerDrift` stops the run (exit 4, nothing saved
for that step) when the mean exceeds `align.grpo.logprob_tolerance`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from functools import partial
from typing import Callable, Dict, List, Optional

import torch

from myllm_mc.config import Config, ConfigError
from myllm_mc.data.tokenizer import Tokenizer
from myllm_mc.evaluate.policy import PolicySampler
from myllm_mc.infer import SamplingParams
from myllm_mc.parallel.hardware import comm_device
from myllm_mc.tasks import compute_rewards, get_reward
from myllm_mc.train.callbacks import Callback
from myllm_mc.train.faults import NONE
from myllm_mc.train.metrics import echo_stderr
from myllm_mc.train.objective import Objective

from .chat_data import read_prompts
from .grpo_loss import aggregate, mask_padded_vocab, token_logps, token_terms, vocab_parallel_entropy
from .rollout import build_rollout, prompt_rollouts, sample_seed
from .sft import _is_first_rank, check_align_layout

DRIFT_EXIT = 4


def check_grpo(cfg: Config) -> None:
    """What a GRPO run needs, refused before any process starts (one line each)."""
    g, t, p = cfg.align.grpo, cfg.training, cfg.parallel
    if g.group_size < 2:
        raise ConfigError(f"align.grpo.group_size={g.group_size}: advantages compare completions of one prompt "
                          "— fix: at least 2 (e.g. 8)")
    if t.global_batch_size % (g.group_size * p.data):
        raise ConfigError(f"training.global_batch_size {t.global_batch_size} must be a multiple of "
                          f"align.grpo.group_size {g.group_size} × parallel.data {p.data} (each data-parallel rank "
                          f"samples whole groups) — fix: e.g. global_batch_size="
                          f"{g.group_size * p.data * max(1, t.global_batch_size // (g.group_size * p.data))}")
    if p.virtual_pipeline:
        raise ConfigError("parallel.virtual_pipeline is set: rollouts generate with one model chunk per rank "
                          "— fix: --set parallel.virtual_pipeline=null")
    if g.iterations < 1 or g.max_new_tokens < 1 or g.eval_prompts < 0 or g.eval_samples < 0:
        raise ConfigError("align.grpo.iterations and max_new_tokens must be ≥ 1, eval_prompts and eval_samples ≥ 0"
                          " — fix: e.g. 1, 16, 64, 4")
    if g.iterations > 1 and cfg.checkpoint.dir and cfg.checkpoint.save_interval % g.iterations:
        raise ConfigError(f"checkpoint.save_interval {cfg.checkpoint.save_interval} is not a multiple of "
                          f"align.grpo.iterations {g.iterations}: a resume would land inside a rollout — fix: "
                          f"save_interval={g.iterations * max(1, cfg.checkpoint.save_interval // g.iterations)}")
    if not 0 < g.epsilon < 1 or (g.epsilon_high is not None and g.epsilon_high <= 0):
        raise ConfigError(f"align.grpo.epsilon={g.epsilon}: the clip range must be in (0, 1) — fix: e.g. 0.2")
    if g.beta < 0 or g.logprob_tolerance <= 0:
        raise ConfigError("align.grpo.beta must be ≥ 0 and logprob_tolerance > 0 — fix: e.g. beta=0.04, 0.05")
    if not g.rewards:
        raise ConfigError("align.grpo.rewards is empty — fix: e.g. {accuracy: 1.0, format: 0.2}")
    for name in g.rewards:
        try:
            get_reward(name)
        except ValueError as err:
            raise ConfigError(f"align.grpo.rewards: {err}") from None
    if g.temperature <= 0:
        raise ConfigError(f"align.grpo.temperature={g.temperature}: rollouts must sample — fix: e.g. 1.0")


class GRPOObjective(Objective):
    name = "grpo"
    loss_key = "grpo loss"
    from_scratch = False

    def __init__(self, cfg: Config, reward_names: List[str], prompts_per_rank: int, tokenizer):
        g = cfg.align.grpo
        self.cfg, self.g, self.tokenizer = cfg, g, tokenizer
        self.reward_names = reward_names
        self.metric_keys = ("reward", *[f"reward {n}" for n in reward_names], "kl", "entropy", "clip fraction",
                            "ratio", "response length", "kept groups", "logprob diff", "advantage abs")
        self.reference: List = []            # frozen chunks (empty when beta = 0)
        self.reference_scope: Callable = contextlib.nullcontext   # LoRA: the policy with its adapters off
        self.prompts_per_rank = prompts_per_rank
        self.sampler = PolicySampler(tokenizer, cfg.model, prompts_per_rank * g.group_size, cfg.training.seed)
        self._batches: Optional[List[dict]] = None
        self._rollout_seconds = 0.0
        self._rollout_tokens = 0
        self.first_iteration = True

    # -- rollouts ------------------------------------------------------------------------------------------
    def sample(self, trainer, prompt_ids: List[List[int]], params) -> list:
        """Generate with the policy itself (`evaluate.policy.PolicySampler`: the weights are shared, not copied)."""
        return self.sampler.generate(trainer, prompt_ids, params)

    def prepare(self, trainer, iterators, forward_only):
        if forward_only:
            return iterators
        if trainer.step % self.g.iterations == 0 or self._batches is None:
            self._batches = self._new_rollout(trainer, next(iterators[0]))
            self.first_iteration = True
        else:
            self.first_iteration = False
        return [iter(self._batches) for _ in iterators]

    def _new_rollout(self, trainer, work) -> List[dict]:
        # megatron-core and the training engine on use: the launching parent imports this module for check_grpo
        from megatron.core import parallel_state as ps

        from myllm_mc.train.step import run_schedule

        g, started = self.g, time.perf_counter()
        index, items = work
        prompts = [prompt for _, prompt in items]
        params = [SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                 top_k=g.top_k, logprobs=True,
                                 seed=sample_seed(self.cfg.training.seed, index, position, j))
                  for position, _ in items for j in range(g.group_size)]
        completions = self.sample(trainer, [p.ids for p in prompts for _ in range(g.group_size)], params)

        def global_kept(count: int) -> int:
            total = torch.tensor([count], dtype=torch.long, device=comm_device())
            torch.distributed.all_reduce(total, group=ps.get_data_parallel_group())
            return int(total.item())

        rollout = build_rollout(prompts, completions, g.group_size, self.cfg.model.seq_length, self.tokenizer.pad,
                                self.tokenizer, g.rewards, g.scale_rewards, g.drop_equal_groups, global_kept)
        self.last_texts = rollout.texts
        batches = rollout.micro_batches(self.cfg.training.micro_batch_size)
        if self.reference:
            n = trainer.num_microbatches
            with torch.no_grad(), self.reference_scope():
                store = run_schedule(self.reference, self._reference_step, [iter(batches)], n,
                                     self.cfg.model.seq_length, self.cfg.training.micro_batch_size, True)
            for batch, entry in zip(batches, store):            # last pipeline stage only
                batch["ref_logps"] = entry["ref logps"]
        self._rollout_seconds = time.perf_counter() - started
        self._rollout_tokens = int(rollout.lengths.sum())
        return batches

    # -- the step ------------------------------------------------------------------------------------------
    def _logits(self, model, batch):
        device = next(model.parameters()).device
        for key in ("tokens", "position_ids", "labels"):
            batch[key] = batch[key].to(device)
        return model(batch["tokens"], batch["position_ids"], None)      # causal; right padding is never attended

    def _reference_step(self, data_iterator, model):
        batch = next(data_iterator)
        output = self._logits(model, batch)

        def collect(logits):
            one = torch.ones((), dtype=torch.int, device=logits.device)
            logits = mask_padded_vocab(logits, self.tokenizer.vocab_size)
            return logits.sum() * 0, one, {"ref logps": token_logps(logits, batch["labels"]).detach()}
        return output, collect

    def forward_step(self, data_iterator, model):
        batch = next(data_iterator)
        return self._logits(model, batch), partial(self.loss, batch)

    def loss(self, batch, logits):
        g = self.g
        logits = mask_padded_vocab(logits, self.tokenizer.vocab_size)
        entropy = vocab_parallel_entropy(logits)                       # before megatron's in-place shift
        logp = token_logps(logits, batch["labels"])
        device = logp.device
        mask = batch["mask"].to(device)
        if self.first_iteration or "old_logps" not in batch:
            batch["old_logps"] = logp.detach()
        if self.first_iteration or "diff" not in batch:        # the sampler check, once per rollout
            completion = batch["completion"].to(device)
            sampled = (batch["sampler_logps"].to(device) - logp.detach()).abs() * completion
            batch["diff"] = torch.stack([sampled.sum(), completion.sum()])
            batch["diff_max"] = sampled.max()
        ref = batch["ref_logps"].to(device) if "ref_logps" in batch else None
        terms = token_terms(logp, batch["old_logps"], ref, batch["advantages"].to(device), g.epsilon,
                            g.epsilon_high if g.epsilon_high is not None else g.epsilon, g.beta)
        loss_sum, count = aggregate(terms["loss"], mask, g.loss_aggregation, g.max_new_tokens)

        tokens = mask.sum()
        rows = torch.tensor(float(mask.size(0)), device=device)

        def per_token(values):
            return torch.stack([(values.detach().float() * mask).sum(), tokens])

        def per_row(values):
            return torch.stack([values.detach().float().to(device).sum(), rows])

        reports = {"grpo loss": torch.stack([loss_sum.detach(), count.float()]),
                   "reward": per_row(batch["rewards"]),
                   **{f"reward {n}": per_row(batch["components"][:, i]) for i, n in enumerate(self.reward_names)},
                   "kl": per_token(terms["kl"]), "entropy": per_token(entropy), "clip fraction": per_token(terms["clipped"]),
                   "ratio": per_token(terms["ratio"]), "response length": per_row(batch["lengths"]),
                   "kept groups": per_row(batch["kept"]), "logprob diff": batch["diff"].to(device),
                   "advantage abs": per_row(batch["advantages"].abs()),
                   "logprob diff max": batch["diff_max"].detach().to(device)}
        return loss_sum, count, reports

    def metrics(self, forward_data_store: List[dict]) -> Dict[str, float]:
        out = super().metrics(forward_data_store)
        local = max((float(entry["logprob diff max"]) for entry in forward_data_store), default=0.0)
        value = torch.tensor([local], dtype=torch.float64, device=comm_device())
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        out["logprob_diff_max"] = float(value.item())
        out["rollout_s"] = self._rollout_seconds if self.first_iteration else 0.0
        out["sampled_tokens_per_s"] = (self._rollout_tokens / self._rollout_seconds
                                       if self.first_iteration and self._rollout_seconds else 0.0)
        return out


class SamplerDrift(Callback):
    """Stops the run when the trainer's log-probs of the sampled tokens drift from the sampler's."""

    def __init__(self, tolerance: float, warn=print):
        self.tolerance, self.warn = tolerance, warn

    def on_step_end(self, trainer, record, control):
        metrics = record.extra.get("metrics", {})
        diff = metrics.get("logprob_diff", 0.0)
        if diff > self.tolerance:
            control.request_stop(
                f"sampler and trainer disagree on the sampled tokens' log-probs: mean |Δ| {diff:.3g} (max "
                f"{metrics.get('logprob_diff_max', 0.0):.3g}) > align.grpo.logprob_tolerance {self.tolerance} at "
                f"step {record.step}; this step is not saved — fix: check that generation and training use the "
                f"same weights, precision and vocabulary, or raise the tolerance", exit_code=DRIFT_EXIT, save=False)


def read_grpo_prompts(cfg: Config, tokenizer, echo=print):
    """(train prompts, held-out prompts): rendered, too-long and unscorable records counted and skipped."""
    a, g = cfg.align, cfg.align.grpo
    limit = cfg.model.seq_length - g.max_new_tokens
    if limit < 1:
        raise ConfigError(f"align.grpo.max_new_tokens {g.max_new_tokens} leaves no room for a prompt in "
                          f"model.seq_length {cfg.model.seq_length} — fix: fewer new tokens or a longer sequence")

    def scorable(record):
        compute_rewards(record, "", g.rewards)              # raises for a record a reward cannot score

    train, stats = read_prompts(a.train, tokenizer, a.strict, a.max_records, limit, scorable)
    echo(stats.summary("grpo prompts"))
    if not train:
        raise SystemExit(f"align.train: no usable prompt in {', '.join(a.train)} — fix: check the files "
                         "(data/tasks/prompts/*.jsonl are the shipped ones)")
    held_out = []
    if a.valid and g.eval_prompts:
        held_out, vstats = read_prompts(a.valid, tokenizer, a.strict, None, limit, scorable)
        echo(vstats.summary("grpo held-out prompts"))
        held_out = _spread(held_out, g.eval_prompts)
    return train, held_out


def _spread(prompts, count: int):
    """`count` prompts taken evenly across the list (several files: every task is represented)."""
    if len(prompts) <= count:
        return prompts
    return [prompts[i * len(prompts) // count] for i in range(count)]


def run_grpo(cfg: Config, faults=None, extra_callbacks=()):
    """`myllm finetune grpo`: policy from `checkpoint.init_from` (or resumed), frozen reference from
    `align.reference` or `checkpoint.init_from` (none when beta = 0), both in the run's layout."""
    from myllm_mc.lora.apply import adapters_disabled  # megatron-core: see _new_rollout
    from myllm_mc.train.run import run_objective
    from myllm_mc.train.setup import build_frozen_model

    from .dpo import adapter_reference
    from .grpo_eval import GRPOPlot, HeldOutAccuracy
    check_align_layout(cfg, "grpo")
    check_grpo(cfg)
    first = _is_first_rank()
    echo = print if first else (lambda message: None)
    tokenizer = Tokenizer(cfg.data.tokenizer)
    train, held_out = read_grpo_prompts(cfg, tokenizer, echo)
    g, t = cfg.align.grpo, cfg.training
    per_rollout = t.global_batch_size // g.group_size
    if cfg.align.epochs:
        steps = math.ceil(cfg.align.epochs * len(train) / per_rollout) * g.iterations
        cfg = dataclasses.replace(cfg, training=dataclasses.replace(t, steps=steps))
    echo(f"grpo: {len(train):,} prompts, {per_rollout} per rollout × {g.group_size} completions, "
         f"{cfg.training.steps} steps ({g.iterations} per rollout) = "
         f"{cfg.training.steps // g.iterations * per_rollout / len(train):.2f} epochs; rewards "
         + ", ".join(f"{n}×{w:g}" for n, w in g.rewards.items())
         + f"; beta {g.beta}, clip {g.epsilon}/{g.epsilon_high if g.epsilon_high is not None else g.epsilon}, "
           f"{g.loss_aggregation}-level loss, {'std-scaled' if g.scale_rewards else 'Dr. GRPO (unscaled)'} advantages")
    objective = GRPOObjective(cfg, list(g.rewards), per_rollout // cfg.parallel.data, tokenizer)

    def make_data(run_cfg, state):
        from megatron.core import parallel_state as ps

        from myllm_mc.train.trainer import ObjectiveData
        if g.beta > 0 and adapter_reference(cfg):
            objective.reference = state.model
            objective.reference_scope = partial(adapters_disabled, state.model)
            echo("grpo reference: the policy's base with its LoRA adapters disabled (no frozen copy in memory)")
        elif g.beta > 0:
            objective.reference = build_frozen_model(run_cfg, cfg.align.reference or cfg.checkpoint.init_from)
        rank, size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        return ObjectiveData(lambda consumed: prompt_rollouts(
            train, per_rollout, run_cfg.training.seed, rank, size, consumed // run_cfg.training.global_batch_size
            // g.iterations))

    callbacks = [SamplerDrift(g.logprob_tolerance, echo_stderr if first else (lambda message: None)),
                 HeldOutAccuracy(objective, held_out, cfg.training.eval_interval, cfg.training.steps),
                 GRPOPlot(cfg.logging.dir, write=first and cfg.logging.plot), *extra_callbacks]
    return run_objective(cfg, objective, make_data, faults or NONE, callbacks)

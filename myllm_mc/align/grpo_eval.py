"""What a GRPO run shows: held-out accuracy by greedy generation (at the start, every training.eval_interval steps
and at the end), and `grpo.png` — reward (mean and per component), held-out accuracy, KL, entropy, response
length and clip fraction against the step."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch
from megatron.core import parallel_state as ps

from myllm_mc.evaluate.tasks import policy_task_accuracy
from myllm_mc.infer import SamplingParams
from myllm_mc.parallel.hardware import comm_device
from myllm_mc.tasks import compute_rewards, is_correct
from myllm_mc.train.callbacks import Callback
from myllm_mc.train.task_eval import ScheduledEvaluation

from .rollout import sample_seed


class HeldOutAccuracy(ScheduledEvaluation):
    """The first `align.grpo.eval_prompts` held-out prompts, split over the DP ranks: one greedy reply each
    (exact-answer accuracy, format compliance, reply length) and `eval_samples` replies sampled as in training
    (their mean accuracy and mean reward: what GRPO optimises, so it moves first). The greedy part is
    `evaluate.tasks.policy_task_accuracy`, the scoring `myllm eval` and `training.eval_tasks` use. Sampling seeds
    depend only on the prompt and the sample, so every evaluation of a run draws the same random numbers."""

    def __init__(self, objective, prompts, interval: int, total_steps: int):
        super().__init__(interval, total_steps)
        self.objective, self.prompts = objective, prompts
        self.active = bool(prompts)

    def on_train_start(self, trainer):
        if self.active:
            self._evaluate(trainer)

    def _sampled(self, trainer):
        """`eval_samples` replies per held-out prompt of this DP rank, sampled as in training: (correct, reward)
        sums and the count, summed over the DP ranks."""
        g, seed, tokenizer = self.objective.g, trainer.cfg.training.seed, self.objective.tokenizer
        rank, size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        requests = [(self.prompts[i], SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature,
                                                     top_p=g.top_p, top_k=g.top_k, seed=sample_seed(seed, -1, i, j)))
                    for i in range(rank, len(self.prompts), size) for j in range(g.eval_samples)]
        sums = torch.zeros(3, dtype=torch.float64, device=comm_device())
        batch = self.objective.sampler.max_batch
        for start in range(0, len(requests), batch):
            part = requests[start:start + batch]
            done = self.objective.sample(trainer, [p.ids for p, _ in part], [params for _, params in part])
            for (prompt, _), completion in zip(part, done):
                text = tokenizer.decode(completion.token_ids, skip_special_tokens=False)
                sums += torch.tensor([float(is_correct(prompt.record, text)),
                                      compute_rewards(prompt.record, text, g.rewards)[0], 1.0],
                                     dtype=torch.float64, device=sums.device)
        torch.distributed.all_reduce(sums, group=ps.get_data_parallel_group())
        return sums.tolist()

    def _evaluate(self, trainer):
        greedy = policy_task_accuracy(self.objective.sampler, trainer, [p.record for p in self.prompts],
                                      [p.ids for p in self.prompts], self.objective.g.max_new_tokens)["all"]
        metrics = {"accuracy": greedy["accuracy"], "format": greedy["format"],
                   "response_length": greedy["response_length"], "prompts": greedy["total"]}
        if self.objective.g.eval_samples:
            correct, reward, count = self._sampled(trainer)
            metrics.update(sampled_accuracy=correct / max(count, 1.0), sampled_reward=reward / max(count, 1.0))
        trainer.valid_history.append({"step": trainer.step, **metrics})
        trainer.callbacks.on_eval_end(trainer, trainer.step, metrics)


class GRPOPlot(Callback):
    """Collects each step's GRPO metrics and the held-out rows; rank 0 writes `grpo.png` at the end."""

    PANELS = (("reward", "reward (mean and per component)"), ("accuracy", "held-out accuracy"),
              ("kl", "KL to the reference (k3)"), ("entropy", "policy entropy (nats/token)"),
              ("response_length", "response length (tokens)"), ("clip_fraction", "clip fraction"))

    def __init__(self, out_dir, write: bool):
        self.out_dir, self.write = Path(out_dir), write
        self.steps: List[Dict[str, float]] = []
        self.evals: List[Dict[str, float]] = []

    def on_step_end(self, trainer, record, control):
        self.steps.append({"step": record.step, **record.extra.get("metrics", {})})

    def on_eval_end(self, trainer, step, metrics):
        self.evals.append({"step": step, **metrics})

    def on_train_end(self, trainer):
        if self.write and self.steps:
            plot_grpo(self.steps, self.evals, self.out_dir / "grpo.png")


def plot_grpo(steps: List[dict], evals: List[dict], path: Path) -> Path:
    import matplotlib  # only for the plot, and the backend is chosen before pyplot is imported
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), dpi=100)
    x = [row["step"] for row in steps]
    for ax, (key, title) in zip(axes.flat, GRPOPlot.PANELS):
        if key == "accuracy":
            ax.plot([r["step"] for r in evals], [r.get("accuracy", 0.0) for r in evals], "o-", label="exact answer")
            ax.plot([r["step"] for r in evals], [r.get("format", 0.0) for r in evals], "s--", label="format")
            ax.plot([r["step"] for r in evals], [r.get("sampled_accuracy", 0.0) for r in evals], "^-",
                    label="exact answer, sampled")
            ax.set_ylim(-0.02, 1.02)
            ax.legend(fontsize=8)
        else:
            ax.plot(x, [row.get(key, 0.0) for row in steps], label="mean" if key == "reward" else None)
            if key == "reward":
                for name in sorted(k for k in steps[0] if k.startswith("reward_")):
                    ax.plot(x, [row.get(name, 0.0) for row in steps], "--", label=name[len("reward_"):])
                ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

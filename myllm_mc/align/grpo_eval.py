"""What a GRPO run shows: held-out accuracy by greedy generation (at the start, every training.eval_interval steps
and at the end), and `grpo.png` — reward (mean and per component), held-out accuracy, KL, entropy, response
length and clip fraction against the step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List

from myllm_mc.train.callbacks import Callback


class HeldOutAccuracy(Callback):
    """The first `align.grpo.eval_prompts` held-out prompts, split over the DP ranks: one greedy reply each
    (exact-answer accuracy, format compliance, reply length) and `eval_samples` replies sampled as in training
    (their mean accuracy and mean reward: what GRPO optimises, so it moves first). Sampling seeds depend only
    on the prompt and the sample, so every evaluation of a run draws the same random numbers."""

    def __init__(self, objective, prompts, interval: int, total_steps: int):
        self.objective, self.prompts = objective, prompts
        self.interval, self.total_steps = interval, total_steps

    def on_train_start(self, trainer):
        if self.prompts:
            self._evaluate(trainer)

    def on_step_end(self, trainer, record, control):
        due = (self.interval and trainer.step % self.interval == 0) or trainer.step == self.total_steps
        if self.prompts and due and not (control.stop and control.exit_code):
            started = time.perf_counter()
            self._evaluate(trainer)
            trainer.loop_seconds += time.perf_counter() - started          # loop work, not callback overhead

    def _requests(self, trainer):
        """[(prompt, params, greedy?)] for this DP rank."""
        from megatron.core import parallel_state as ps

        from myllm_mc.infer import SamplingParams

        from .rollout import sample_seed

        g, seed = self.objective.g, trainer.cfg.training.seed
        rank, size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        out = []
        for index in range(rank, len(self.prompts), size):
            prompt = self.prompts[index]
            out.append((prompt, SamplingParams(max_new_tokens=g.max_new_tokens, temperature=0.0), True))
            out += [(prompt, SamplingParams(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p,
                                            top_k=g.top_k, seed=sample_seed(seed, -1, index, j)), False)
                    for j in range(g.eval_samples)]
        return out

    def _evaluate(self, trainer):
        import torch
        from megatron.core import parallel_state as ps

        from myllm_mc.data.tasks import compute_rewards, follows_format, is_correct
        from myllm_mc.train.step import comm_device

        # greedy: correct, format, length, count; sampled: correct, reward, count
        sums = torch.zeros(7, dtype=torch.float64, device=comm_device())
        tokenizer, weights = self.objective.tokenizer, self.objective.g.rewards
        requests = self._requests(trainer)
        batch = self.objective.generator_for(trainer).max_batch
        for start in range(0, len(requests), batch):
            part = requests[start:start + batch]
            done = self.objective.sample(trainer, [p.ids for p, _, _ in part], [params for _, params, _ in part])
            for (prompt, _, greedy), completion in zip(part, done):
                text = tokenizer.decode(completion.token_ids, skip_special_tokens=False)
                correct = float(is_correct(prompt.record, text))
                if greedy:
                    row = [correct, follows_format(prompt.record, text), len(completion.token_ids), 1, 0, 0, 0]
                else:
                    row = [0, 0, 0, 0, correct, compute_rewards(prompt.record, text, weights)[0], 1]
                sums += torch.tensor(row, dtype=torch.float64, device=sums.device)
        torch.distributed.all_reduce(sums, group=ps.get_data_parallel_group())
        n, k = max(float(sums[3]), 1.0), max(float(sums[6]), 1.0)
        metrics = {"accuracy": float(sums[0]) / n, "format": float(sums[1]) / n,
                   "response_length": float(sums[2]) / n, "prompts": int(sums[3])}
        if sums[6] > 0:
            metrics.update(sampled_accuracy=float(sums[4]) / k, sampled_reward=float(sums[5]) / k)
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
    import matplotlib
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

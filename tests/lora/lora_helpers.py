"""What the LoRA tests share: the base model's shape, the run settings, a config builder, a resume copy, and a
callback that snapshots the trainer's parameters."""

import shutil
from pathlib import Path

from myllm_mc.config import load
from myllm_mc.train.callbacks import Callback

REPO = Path(__file__).resolve().parents[2]
MODEL = ["model.num_layers=2", "model.hidden_size=128", "model.num_attention_heads=4", "model.num_query_groups=2",
         "model.kv_channels=32", "model.ffn_hidden_size=384", "model.vocab_size=1024", "model.seq_length=128",
         "model.precision=fp32", "model.spec=local", "model.init_std=0.1"]
RUN = ["align.epochs=null", "align.max_records=200", "training.micro_batch_size=2", "training.global_batch_size=4",
       "training.eval_interval=0", "training.eval_tasks=[]", "align.valid=[]", "logging.log_interval=1",
       "logging.tensorboard=false", "logging.plot=false", "align.lora.enabled=true", "align.lora.rank=4",
       "optimizer.lr=1e-2", "schedule.warmup_steps=1", "checkpoint.keep_last=5"]


def sft_config(lora_base, name: str, *extra):
    root = lora_base["root"]
    return load(REPO / "configs" / "sft_tiny.yaml", lora_base["model"] + RUN + [
        f"checkpoint.init_from={lora_base['base']}", f"checkpoint.dir={root / name / 'ckpt'}",
        f"logging.dir={root / name}", *extra], world_size=1)


def resume_copy(run_dir: Path, step_name: str, target: Path) -> None:
    target.mkdir(parents=True)
    shutil.copytree(run_dir / step_name, target / step_name)
    (target / "latest").write_text(step_name + "\n")


class ParameterWatch(Callback):
    """Copies of every parameter at the start and the end of training (a callback: the trainer's own model)."""

    def on_train_start(self, trainer):
        self.start = _snapshot(trainer.model)

    def on_train_end(self, trainer):
        self.end = _snapshot(trainer.model)


def _snapshot(model):
    return {f"{i}.{name}": (param.detach().clone(), param.requires_grad)
            for i, chunk in enumerate(model) for name, param in chunk.module.named_parameters()}

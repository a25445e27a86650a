"""Typed configuration groups.

One frozen dataclass per concern, grouped the way a user thinks about a run (model, data, parallel, ...).
Every stage of the chain receives the whole `Config` or one of its groups; nothing reads YAML or the
environment on its own. Field comments are the documentation `myllm config show` is read against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Union


@dataclass(frozen=True)
class MoEConfig:
    """Mixture of experts (megatron-core's MoELayer: TopKRouter, token dispatcher, SequentialMLP/TEGroupedMLP
    experts, shared experts). num_experts 0 = a dense model. See docs/moe.md."""

    num_experts: int = 0                # routed experts per MoE layer; 0 = dense MLP everywhere
    top_k: int = 2                      # experts each token is routed to
    ffn_hidden_size: Optional[int] = None   # each routed expert's SwiGLU size; null = model.ffn_hidden_size
    shared_expert_ffn_hidden_size: int = 0  # always-on shared expert(s), total SwiGLU size; 0 = none
    first_dense_layers: int = 0         # the first k layers keep a dense MLP (DeepSeek's first_k_dense_replace)
    layer_pattern: Optional[list] = None    # per layer 1 = MoE, 0 = dense (length num_layers); overrides the above
    router_score: Literal["softmax", "sigmoid"] = "softmax"
    router_pre_softmax: bool = False    # softmax over all experts before top-k (needed for top_k 1 with softmax)
    load_balancing: Literal["aux_loss", "seq_aux_loss", "global_aux_loss", "none"] = "aux_loss"
    aux_loss_coeff: float = 1e-2        # GShard/Switch load-balancing loss coefficient (0 = off)
    z_loss_coeff: float = 0.0           # ST-MoE router z-loss coefficient (0 = off; 1e-3 is a usual start)
    expert_bias: bool = False           # aux-loss-free balancing (DeepSeek-V3): a per-expert routing bias
    bias_update_rate: float = 1e-3      #   moved towards balance after every step; needs router_score sigmoid
    capacity_factor: Optional[float] = None   # tokens per expert capped at factor × fair share; null = no dropping
    pad_to_capacity: bool = False       # pad every expert's input to its capacity (static shapes)
    drop_policy: Literal["probs", "position"] = "probs"   # which tokens over capacity are dropped
    dispatcher: Literal["alltoall", "allgather", "flex"] = "alltoall"   # token exchange between expert ranks;
    #                                     flex = DeepEP/HybridEP (GPU only)
    grouped_gemm: bool = False          # one grouped GEMM for a rank's experts (TE, GPU); false = SequentialMLP
    router_dtype: Literal["fp32", "fp64", "model"] = "fp32"   # routing and the weighted sum of expert outputs


@dataclass(frozen=True)
class ModelConfig:
    """The decoder-only transformer: shape, numerics and which kernels implement it."""

    name: str = "tiny"
    num_layers: int = 4
    hidden_size: int = 256
    num_attention_heads: int = 4
    num_query_groups: int = 2           # grouped-query attention: key/value heads
    kv_channels: Optional[int] = 64     # head dimension; null = hidden_size / num_attention_heads
    ffn_hidden_size: int = 768          # SwiGLU intermediate size
    vocab_size: int = 8192
    seq_length: int = 256
    normalization: Literal["RMSNorm", "LayerNorm"] = "RMSNorm"
    norm_epsilon: float = 1e-5
    activation: Literal["swiglu", "gelu"] = "swiglu"
    position_embedding: Literal["rope", "learned_absolute"] = "rope"
    rotary_base: int = 10000
    rope_scaling: Literal["none", "llama3"] = "none"   # llama3: Llama 3.1/3.2 frequency scaling, megatron-core's
    #                                     rope_scaling (its low/high frequency factors 1 and 4 and original context
    #                                     8,192 are fixed there, as in every Llama 3.x release)
    rope_scaling_factor: float = 8.0    # llama3 scaling factor (Llama 3.1: 8, Llama 3.2: 32)
    add_bias: bool = False
    qkv_bias: bool = False              # bias on the q, k, v projections only (Qwen2); add_bias puts one on every linear
    qk_norm: bool = False               # RMSNorm over each query and key head before RoPE (Qwen3)
    family: str = "llama"               # the HF / GGUF architecture export writes (myllm_mc/interop/families:
    #                                     llama, mistral, qwen2, qwen3, qwen3_moe, mixtral); import sets it
    #                                     from the file
    tie_embeddings: bool = True
    init_std: float = 0.02
    make_vocab_size_divisible_by: int = 128
    recompute: Literal["none", "selective", "full"] = "none"
    spec: Literal["auto", "local", "te"] = "auto"   # te = Transformer Engine kernels (GPU); local = plain torch
    # local spec's core attention: sdpa = torch scaled_dot_product_attention (flash/efficient kernels, no s×s
    # scores kept); unfused = megatron's DotProductAttention (explicit scores + softmax; no context parallelism)
    attention_backend: Literal["sdpa", "unfused"] = "sdpa"
    precision: Literal["fp32", "bf16", "fp8"] = "bf16"
    fp8_recipe: Literal["delayed", "current"] = "delayed"
    compile: Union[bool, Literal["auto"]] = "auto"   # torch.compile each transformer layer's forward: fuses the
    #                                     element-wise work (RoPE, SwiGLU, RMSNorm) that eager megatron runs op by op;
    #                                     the first step pays the compilation. auto = on for pretraining runs at the
    #                                     layouts its parity test verifies and long enough to amortise it
    #                                     (plan/compile_choice.py; `myllm config show` prints what it resolved to)
    moe: MoEConfig = field(default_factory=MoEConfig)   # mixture of experts (num_experts 0 = dense)


@dataclass(frozen=True)
class DataConfig:
    """Where tokens come from: tokenizer, indexed shards and how they are blended and split."""

    tokenizer: Optional[str] = None     # path to tokenizer.json
    # blend: list of [weight, prefix] pairs or plain prefixes (equal weights); prefixes name .bin/.idx pairs
    blend: list = field(default_factory=list)
    split: str = "969,30,1"             # train,valid,test proportions
    cache_dir: Optional[str] = None     # megatron-core index cache
    reset_position_ids: bool = False   # document masking: restart positions at end-of-document
    reset_attention_mask: bool = False  # document masking: no attention across end-of-document
    eod_mask_loss: bool = False
    num_workers: int = 0
    loader: Literal["megatron", "webdataset", "dali"] = "megatron"
    bytes_per_token: Optional[float] = None   # measured by `myllm data stats`; informs the planner


@dataclass(frozen=True)
class ParallelConfig:
    """The layout. The model never sees these; they are applied to it."""

    world_size: Union[int, Literal["auto"]] = "auto"   # auto = taken from the launcher
    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: Optional[int] = None              # model chunks per pipeline rank (interleaving)
    context: int = 1
    data: Union[int, Literal["auto"]] = "auto"          # auto = world_size / (tensor * pipeline * context)
    sequence_parallel: bool = False
    distributed_optimizer: bool = True
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    expert: int = 1                     # expert parallelism: routed experts split over this many ranks (MoE)
    expert_tensor: Optional[int] = None  # tensor parallelism inside each expert; null = parallel.tensor
    backend: Literal["auto", "nccl", "gloo"] = "auto"


@dataclass(frozen=True)
class TrainingConfig:
    """Batch geometry and run length."""

    micro_batch_size: int = 4
    global_batch_size: int = 16
    steps: int = 200
    seed: int = 1234
    eval_interval: int = 50
    eval_steps: int = 5
    eval_tasks: list = field(default_factory=list)   # shipped task names (or [all]) scored by greedy generation at
    #                                                   the start, every eval_interval and the end (evaluate/task_eval)
    eval_task_prompts: int = 32                      # first N test prompts of each task
    eval_task_max_new_tokens: int = 48               # greedy tokens per answer (stops at <|im_end|>)
    eval_lm_eval: list = field(default_factory=list)  # lm-eval tasks/groups (data/lm_eval's, e.g. myllm_local) run
    #                                                   on the training weights at the start, every eval_interval and
    #                                                   the end, through `myllm eval --lm-eval`'s backend (rank 0)
    eval_lm_eval_limit: Optional[float] = None       # first N documents of each lm-eval task (below 1: a share)


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adamw"] = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-4
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    clip_grad: float = 1.0
    decay_embeddings: bool = False      # weight decay on the (tied) embedding; norms and biases never decay


@dataclass(frozen=True)
class ScheduleConfig:
    warmup_steps: int = 20
    decay: Literal["cosine", "wsd", "linear", "constant"] = "cosine"
    wsd_decay_fraction: float = 0.2     # WSD: share of steps spent in the final decay


@dataclass(frozen=True)
class CheckpointConfig:
    dir: Optional[str] = None
    save_interval: int = 100
    keep_last: int = 2
    async_save: bool = False
    resume: Optional[str] = None        # None, "auto" (latest under dir) or a path
    init_from: Optional[str] = None     # model weights only (any layout), when not resuming: fine-tuning, parity
    allow_tokenizer_change: bool = False   # resume although data.tokenizer differs from the checkpoint's
    allow_vocab_growth: bool = False   # init_from a checkpoint with fewer tokens: copy its rows, new = mean


@dataclass(frozen=True)
class WandbConfig:
    """Weights & Biases beside TensorBoard, from rank 0 (`pip install wandb`; train/tracking.py)."""

    enabled: bool = False
    project: str = "myllm"
    entity: Optional[str] = None
    run_name: Optional[str] = None      # default: the last part of logging.dir
    tags: list = field(default_factory=list)
    offline: bool = False               # a local run under logging.dir/wandb, uploaded later with `wandb sync DIR`


@dataclass(frozen=True)
class MlflowConfig:
    """MLflow beside TensorBoard, from rank 0 (`pip install mlflow-skinny`; train/tracking.py)."""

    enabled: bool = False
    tracking_uri: Optional[str] = None  # null = a local file store, logging.dir/mlruns (offline; `mlflow ui` reads it)
    experiment: str = "myllm"
    run_name: Optional[str] = None      # default: the last part of logging.dir
    tags: list = field(default_factory=list)   # "key=value" or a bare name (tagged "true")


@dataclass(frozen=True)
class LoggingConfig:
    dir: str = "runs/default"
    log_interval: int = 10
    tensorboard: bool = True
    plot: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Convergence checks run as callbacks."""

    init_loss_tolerance: float = 0.5    # warn when step-0 loss is this far from ln(vocab)
    spike_window: int = 50
    spike_zscore: float = 6.0
    max_skipped_steps: int = 3          # NaN/Inf steps tolerated before stopping


@dataclass(frozen=True)
class PlanConfig:
    """Inputs the planner needs that are not properties of the run itself."""

    gpu: str = "h100"
    mfu: float = 0.5
    training_tokens: Optional[float] = None   # token budget; defaults to steps x tokens per step


def _default_rewards() -> dict:
    return {"accuracy": 1.0, "format": 0.2}


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO (`myllm finetune grpo`): rollouts, rewards, advantages and the clipped, KL-penalised loss.
    align.train / align.valid name prompt JSONL files (data/tasks/prompts/*.jsonl). See docs/finetuning.md."""

    group_size: int = 8                 # G completions per prompt; training.global_batch_size counts completions
    max_new_tokens: int = 16            # per completion (a completion also ends at <|im_end|>)
    temperature: float = 1.0            # sampling; the loss uses the model's own distribution (temperature 1)
    top_p: float = 1.0
    top_k: int = 0
    rewards: dict = field(default_factory=_default_rewards)   # reward name → weight (data/tasks/rewards.py registry,
    #                                                           or package.module:function)
    scale_rewards: bool = True          # divide by the group's std; false = Dr. GRPO (mean-centred only)
    drop_equal_groups: bool = True      # a group whose rewards are all equal carries no signal: out of the loss
    epsilon: float = 0.2                # PPO clip: ratio kept in [1 - epsilon, 1 + epsilon_high]
    epsilon_high: Optional[float] = None   # null = epsilon (DAPO's clip-higher sets e.g. 0.28)
    beta: float = 0.04                  # KL(π‖π_ref) coefficient, k3 estimator; 0 = no reference model at all
    loss_aggregation: Literal["token", "sequence", "constant"] = "token"   # see docs/finetuning.md (bias of each)
    iterations: int = 1                 # optimizer steps per rollout batch (μ); >1 makes the clipped ratio matter
    logprob_tolerance: float = 0.05     # stop when mean |log p_trainer − log p_sampler| exceeds this
    eval_prompts: int = 64              # held-out prompts scored at the start, every training.eval_interval, the end
    eval_samples: int = 4               # sampled replies per held-out prompt (at `temperature`) besides the greedy one


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA (Hu et al. 2021) for `myllm finetune sft|dpo|grpo`: low-rank adapters on megatron-core's parallel linear
    layers, the base frozen; the optimizer and the checkpoints hold only the adapters. See docs/finetuning.md."""

    enabled: bool = False
    rank: int = 16                      # r: the adapters' inner dimension
    alpha: float = 32.0                 # the update is scaled by alpha / rank (PEFT's convention)
    dropout: float = 0.0                # on the adapter's input only (the base path is untouched)
    targets: list = field(default_factory=lambda: ["all-linear"])   # linear_qkv, linear_proj, linear_fc1,
    #                                     linear_fc2, or all-linear (the four)
    layers: Optional[list] = None       # 0-based layer indices to adapt; null = every layer


@dataclass(frozen=True)
class AlignConfig:
    """Fine-tuning (`myllm finetune sft|dpo|grpo`): chat data, packing, epochs, DPO's beta. See docs/finetuning.md."""

    train: list = field(default_factory=list)       # JSONL files: SFT {"messages"}; DPO {"prompt"|"messages", "chosen", "rejected"};
    #                                                 SFT also takes `tools/preprocess_data.py --chat` output prefixes
    valid: list = field(default_factory=list)       # held-out JSONL files (or SFT prefixes) of the same kind (eval)
    epochs: Optional[float] = None      # when set, training.steps = ceil(epochs × sequences / global batch)
    packing: bool = True                # SFT: several conversations per sequence, block-diagonal attention
    strict: bool = False                # stop at the first bad record instead of counting and skipping it
    max_records: Optional[int] = None   # use only the first N records of each train file (tests, quick runs)
    beta: float = 0.1                   # DPO: strength of the KL constraint to the reference
    label_smoothing: float = 0.0        # DPO: conservative DPO (probability that a preference label is flipped)
    reference: Optional[str] = None     # DPO/GRPO: reference weights; default checkpoint.init_from
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    align: AlignConfig = field(default_factory=AlignConfig)

    @property
    def tokens_per_step(self) -> int:
        return self.training.global_batch_size * self.model.seq_length

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per optimizer step on each data-parallel rank: global batch / (micro batch × data).
        Needs a resolved layout (parallel.data a number, as after resolve_and_validate)."""
        t, data = self.training, self.parallel.data
        if not isinstance(data, int):
            raise ValueError(f"num_microbatches: parallel.data is {data!r}; resolve the layout first")
        return t.global_batch_size // (t.micro_batch_size * data)

"""`model.compile: auto` (plan/compile_choice.py): on only for a training run at the layout tests/model/test_compile.py
verifies (pretraining in one CPU process, dense, local spec, fp32, no recompute, no LoRA, no document masking) and long enough
(model FLOPs ≥ AUTO_MIN_FLOPS) to amortise the compilation; explicit true/false win; `myllm config show` prints it."""

import pytest

from myllm_mc.config import load
from myllm_mc.plan.compile_choice import AUTO_MIN_FLOPS, compile_choice, run_flops


def _cfg(*overrides, world_size=1):
    return load("configs/tiny.yaml", list(overrides), world_size=world_size)


def test_auto_is_on_for_the_tiny_preset_and_off_for_a_short_run():
    cfg = _cfg()
    assert cfg.model.compile == "auto"
    assert run_flops(cfg) == pytest.approx(200 * 1.35291e11, rel=1e-5)       # 200 steps × 16 × 256 tokens
    on, why = compile_choice(cfg)
    assert on and why.startswith("auto: on") and "27.1e12" in why
    steps = int(AUTO_MIN_FLOPS // (run_flops(cfg) / 200))                    # 73 steps: just under the threshold
    assert compile_choice(_cfg(f"training.steps={steps + 1}"))[0]
    on, why = compile_choice(_cfg(f"training.steps={steps}"))
    assert not on and "short run" in why


@pytest.mark.parametrize("overrides, world, reason", [
    (["parallel.tensor=2"], 2, "world size 2"),
    ([], 2, "world size 2"),                                                   # data parallel 2
    (["model.recompute=selective"], 1, "recompute selective"),
    (["model.precision=bf16"], 1, "precision bf16"),
    (["align.lora.enabled=true"], 1, "LoRA"),
    (["data.reset_attention_mask=true"], 1, "document masking"),
    (["model.moe.num_experts=4", "model.moe.ffn_hidden_size=192"], 1, "mixture of experts"),
    (["training.eval_tasks=[arithmetic]"], 1, "generation during training"),
])
def test_auto_is_off_where_compile_is_not_verified(overrides, world, reason):
    on, why = compile_choice(_cfg(*overrides, world_size=world))
    assert not on and reason in why, why


def test_auto_is_off_for_inference_gpu_and_te_but_explicit_values_win():
    cfg = _cfg()
    assert compile_choice(cfg, pretraining=False) == (False, "auto: off — not verified here (not a pretraining run)")
    assert "GPU" in compile_choice(cfg, cuda=True)[1] and "spec te" in compile_choice(cfg, spec="te")[1]
    assert compile_choice(_cfg("model.compile=true", "training.steps=2"), pretraining=False) == (True, "model.compile: true")
    assert compile_choice(_cfg("model.compile=false")) == (False, "model.compile: false")


def test_recompute_is_refused_only_with_an_explicit_true():
    from myllm_mc.config import ConfigError
    assert _cfg("model.recompute=full").model.compile == "auto"
    with pytest.raises(ConfigError, match="model.compile with model.recompute=full"):
        _cfg("model.compile=true", "model.recompute=full")


def test_config_show_prints_what_auto_resolved_to(capsys):
    from myllm_mc.preflight import main
    assert main(["show", "configs/tiny.yaml"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "# model.compile resolves to on for a CPU pretraining run (auto: on — verified layout, 27.1e12 model FLOPs"
        " ≥ 10e12 amortise the compilation)")
    assert main(["show", "configs/tiny.yaml", "--set", "training.steps=6"]) == 0
    assert "resolves to off for a CPU pretraining run (auto: off — a short run" in capsys.readouterr().out


def test_build_model_compiles_under_auto_only_for_pretraining(single_rank):
    import dataclasses

    from myllm_mc.model import build_model

    cfg = dataclasses.replace(single_rank, training=dataclasses.replace(single_rank.training, steps=100_000))
    assert compile_choice(cfg)[0]

    def compiled(chunks):
        return [hasattr(layer.forward, "_torchdynamo_orig_callable") for layer in chunks[0].decoder.layers]

    assert compiled(build_model(cfg, pretraining=True)) == [True] * cfg.model.num_layers       # lazy: nothing ran yet
    assert compiled(build_model(cfg)) == [False] * cfg.model.num_layers                     # inference, fine-tuning, reference
    assert compiled(build_model(single_rank, pretraining=True)) == [False] * cfg.model.num_layers   # a short run


def test_the_benchmark_decides_auto_for_the_configured_run_not_its_few_steps():
    from myllm_mc.bench.measure import bench_overrides, compile_override

    assert compile_override(_cfg()) == ["model.compile=true"]                      # 200 configured steps
    assert compile_override(_cfg("training.steps=6")) == ["model.compile=false"]
    assert compile_override(_cfg("model.compile=false")) == []
    timed = load("configs/tiny.yaml", compile_override(_cfg()) + bench_overrides(2, 5, "/tmp/unused"), world_size=1)
    assert timed.training.steps == 7 and compile_choice(timed) == (True, "model.compile: true")

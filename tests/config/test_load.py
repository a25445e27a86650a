"""Loading, overrides and the full print-back of the typed config."""

import dataclasses
import typing

import pytest
import yaml

from myllm_mc.config import Config, ConfigError, dump, from_dict, load, parse_override, to_dict
from myllm_mc.config.loader import _build

PRESETS = ["configs/myllm_1b.yaml", "configs/tiny.yaml"]


@pytest.mark.parametrize("path", PRESETS)
def test_presets_load_and_dump_round_trip(path):
    cfg = load(path)
    again = from_dict(yaml.safe_load(dump(cfg)))
    assert again == cfg


def test_1b_preset_is_the_spec_architecture():
    cfg = load("configs/myllm_1b.yaml")
    m = cfg.model
    assert (m.hidden_size, m.num_layers, m.num_attention_heads, m.kv_channels, m.num_query_groups) == (1792, 28, 14, 128, 2)
    assert (m.ffn_hidden_size, m.vocab_size, m.seq_length) == (4864, 65536, 8192)
    assert (m.normalization, m.activation, m.position_embedding, m.add_bias, m.tie_embeddings) == (
        "RMSNorm", "swiglu", "rope", False, True)
    assert cfg.training.global_batch_size == 128 and cfg.training.steps == 26264
    assert cfg.parallel.world_size == 8 and cfg.parallel.data == 8
    assert cfg.tokens_per_step == 1_048_576


def _leaf_fields(cls=Config, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", tp


def _sample_value(key, tp):
    """A valid non-default text for each field type, and the value it must parse to."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return str(args[-1]), args[-1]
    if origin is typing.Union:
        non_none = [a for a in args if a is not type(None)]
        return _sample_value(key, non_none[0])
    return {bool: ("true", True), int: ("3", 3), float: ("2.5e-4", 2.5e-4), str: ("some/path", "some/path"),
            list: ("[[0.3, a], [0.7, b]]", [[0.3, "a"], [0.7, "b"]]),
            dict: ("{accuracy: 1, format: 0.25}", {"accuracy": 1.0, "format": 0.25})}[tp]


def test_every_field_type_round_trips_through_set():
    """`--set key=value` parses each field type, and the printed config reads back to the same value."""
    for key, tp in _leaf_fields():
        text, expected = _sample_value(key, tp)
        *sections, name = key.split(".")                   # align.grpo.* is nested one level deeper
        tree = {name: yaml.safe_load(text) if text != "some/path" else text}
        for section in reversed(sections):
            tree = {section: tree}
        cfg = _build(Config, tree, "")
        node = cfg
        for section in sections:
            node = getattr(node, section)
        assert getattr(node, name) == expected, key
        path, value = parse_override(f"{key}={text}")
        assert path == [*sections, name]
        again = _build(Config, yaml.safe_load(yaml.safe_dump(to_dict(cfg))), "")
        assert again == cfg, key


def test_set_overrides_apply_and_validate():
    cfg = load("configs/tiny.yaml", ["parallel.tensor=2", "training.steps=7", "optimizer.lr=1e-4", "optimizer.min_lr=1e-5",
                                     "parallel.sequence_parallel=true", "checkpoint.dir=null"], world_size=4)
    assert cfg.parallel.tensor == 2 and cfg.parallel.data == 2 and cfg.parallel.sequence_parallel
    assert cfg.training.steps == 7 and cfg.optimizer.lr == 1e-4 and cfg.checkpoint.dir is None


@pytest.mark.parametrize("override, message", [
    ("parallel.tensr=2", "unknown key 'parallel.tensr' — did you mean 'parallel.tensor'?"),
    ("paralel.tensor=2", "unknown key 'paralel' — did you mean 'parallel'?"),
    ("parallel.tensor=two", "parallel.tensor: expected a whole number, got 'two'"),
    ("parallel.sequence_parallel=maybe", "parallel.sequence_parallel: expected true or false, got 'maybe'"),
    ("optimizer.lr=fast", "optimizer.lr: expected a number, got 'fast'"),
    ("schedule.decay=cosin", "schedule.decay: 'cosin' is not one of 'cosine', 'wsd', 'linear', 'constant' — fix: did you mean 'cosine'?"),
    ("model.precision=fp16", "model.precision: 'fp16' is not one of 'fp32', 'bf16', 'fp8'"),
    ("parallel.data=many", "parallel.data: expected int or 'auto', got 'many'"),
    ("data.blend=prefix", "data.blend: expected a list, got 'prefix'"),
    ("training.steps", "override 'training.steps' has no '='"),
])
def test_bad_values_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as err:
        load("configs/tiny.yaml", [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_yaml_key_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.hiden_size' — did you mean 'model.hidden_size'\?"):
        load(path)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(bad)

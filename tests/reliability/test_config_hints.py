"""Fault-injection table, config keys and values (issue #29): a key written under the wrong section is pointed to
the section that has it, and a field that may be null accepts null — `myllm config show` in a fresh interpreter."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import typing

import pytest

from .faults import REPO, assert_short


def config_show(*overrides):
    done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "config", "show", "configs/tiny.yaml",
                           "--set", *overrides], capture_output=True, text=True, cwd=REPO, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("override, hint", [
    ("optimizer.steps=3", "unknown key 'optimizer.steps' — did you mean 'training.steps'?"),   # not optimizer.eps
    ("lr=3e-4", "unknown key 'lr' — did you mean 'optimizer.lr'?"),
    ("training.lr=3e-4", "unknown key 'training.lr' — did you mean 'optimizer.lr'?"),
    ("logging.save_interval=5", "unknown key 'logging.save_interval' — did you mean 'checkpoint.save_interval'?"),
    ("dir=runs/x", "unknown key 'dir' — did you mean 'checkpoint.dir' or 'logging.dir'?"),
    ("parallel.tensr=2", "unknown key 'parallel.tensr' — did you mean 'parallel.tensor'?"),                  # a misspelling in its own section
])
def test_a_key_in_the_wrong_section_names_the_section_that_has_it(override, hint):
    code, text = config_show(override)
    assert code == 2
    assert_short(text, "config error: " + hint, most=1)


def test_kv_channels_null_is_derived_from_hidden_size_and_heads():
    code, text = config_show("model.kv_channels=null", "model.hidden_size=96", "model.num_attention_heads=3",
                             "model.num_query_groups=1")
    assert code == 0, text
    assert re.search(r"kv_channels: 32\b", text), text
    code, text = config_show("model.kv_channels=null", "model.hidden_size=100", "model.num_attention_heads=3",
                             "model.num_query_groups=1")
    assert code == 2
    assert_short(text, "config error: model.kv_channels: null derives it as hidden_size / num_attention_heads, but"
                       " 100 / 3 is not a whole number — fix:", most=1)


def test_every_optional_field_accepts_null():
    from myllm_mc.config.schema import Config

    def optional_keys(cls, prefix=""):
        for f in dataclasses.fields(cls):
            tp = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(tp):
                yield from optional_keys(tp, f"{prefix}{f.name}.")
            elif type(None) in typing.get_args(tp):
                yield f"{prefix}{f.name}"

    keys = list(optional_keys(Config))
    assert "model.kv_channels" in keys and "checkpoint.resume" in keys
    code, text = config_show(*[f"{key}=null" for key in keys])
    assert code == 0, text

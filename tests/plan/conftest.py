"""Shared fixtures: the presets, loaded through the real config loader (no imports from here: use fixtures)."""

from pathlib import Path

import pytest

from myllm_mc.config import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def one_b():
    return load(ROOT / "configs" / "myllm_1b.yaml")


@pytest.fixture(scope="session")
def tiny():
    return load(ROOT / "configs" / "tiny.yaml")


@pytest.fixture(scope="session")
def load_1b():
    """`load_1b('parallel.tensor=2', ...)`: the 1B preset with overrides."""
    return lambda *overrides: load(ROOT / "configs" / "myllm_1b.yaml", list(overrides))

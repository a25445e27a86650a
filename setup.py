"""myllm_mc: raw text → tokens → pretraining on megatron-core → alignment → inference.

Install (CPU):  pip install torch==2.13.0 && pip install -e ".[data,test]"
GPU extras:     pip install -e ".[gpu]"   (Transformer Engine, DALI). NVIDIA Apex is optional and is built
                from source; never `pip install apex` (that PyPI name is an unrelated project).
"""

from setuptools import find_packages, setup

DATA = ["tokenizers>=0.20,<1", "pyarrow>=14", "webdataset>=0.2.86,<2", "zstandard>=0.22"]
MPI = ["mpi4py>=3.1"]
# `myllm serve`: the ASGI stack, and what its tests drive it with (the official client, a real browser via selenium)
SERVE = ["fastapi==0.165.0", "starlette==1.10.0", "pydantic==2.13.4", "uvicorn==0.54.0", "sse-starlette==3.7.0",
         "httpx==0.28.1", "openai==3.57.0", "selenium==4.51.0"]
# HF/GGUF interop: transformers (+ accelerate for its GGUF loader) as the reference reader, gguf-py to write and
# read GGUF, and llama-cpp-python's runtime deps (its wheel is built from source by .ci/run and installed --no-deps)
INTEROP = ["gguf==0.19.0", "transformers==5.24.0", "accelerate>=1.0", "jinja2>=3.1", "diskcache>=5.6",
           "typing-extensions>=4.5"] + DATA
# lm-evaluation-harness for the `myllm` model backend (`myllm-lm-eval`, `myllm eval --lm-eval`): pinned, pure Python,
# leaves torch alone (its `hf` extra is not used: transformers and accelerate come with INTEROP)
LM_EVAL = ["lm_eval==0.4.13"]
# experiment tracking (logging.wandb / logging.mlflow): not in .[all] — W&B's wheel alone is 20 MB with its
# OpenTelemetry stack; .ci/run installs it for the slow tier's offline tracking test
TRACKING = ["wandb==0.31.0", "mlflow-skinny==3.18.0"]
# NVIDIA DALI (data.loader: dali): not in .[all] — a 424 MB wheel; .ci/run installs it for the slow tier's CPU-only
# pipeline test. Also in .[gpu]
DALI = ["nvidia-dali-cuda120==2.4.0"]
# LoRA adapters in Hugging Face PEFT's format (`myllm export peft`, `myllm import peft`, and the test that PEFT itself
# loads ours): pinned, pure Python; its torch/transformers requirements are already met, so pip leaves torch alone
PEFT = ["peft==0.21.2"]
TEST = ["pytest>=8", "pytest-timeout>=2.3", "pexpect>=4.8", "ruff==0.17.6"] + DATA + INTEROP   # pexpect: `myllm chat` in a real pty

setup(
    name="myllm_mc",
    version="0.1.0",
    description="Derive, train, align and serve a ~1B language model on megatron-core",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["myllm_mc", "myllm_mc.*"]),
    package_data={"myllm_mc.serve": ["static/*.html"]},     # the chat page `myllm serve` shows at /
    install_requires=[
        "torch>=2.4",                   # install torch==2.13.0 (CPU) or your CUDA build first; not upgraded here
        "megatron-core==0.16.1",
        "pyyaml>=6",
        "numpy>=1.24",
        "rich>=13",
        "psutil>=5.9",                  # megatron-core's dist_checkpointing writer needs it
        "matplotlib>=3.7",              # loss/throughput PNGs
        "tensorboard>=2.14",
        "safetensors>=0.4",
    ],
    extras_require={
        "gpu": ["transformer-engine[pytorch]", *DALI],
        "dali": DALI,
        "data": DATA,
        "mpi": MPI,
        "interop": INTEROP,
        "test": TEST,
        "serve": SERVE,
        "lm_eval": LM_EVAL,
        "tracking": TRACKING,
        "peft": PEFT,
        "all": DATA + MPI + TEST + INTEROP + SERVE + LM_EVAL + PEFT,
    },
    # myllm-lm-eval: lm_eval's own CLI with the `myllm` model registered (lm_eval 0.4.13 discovers no plugins)
    entry_points={"console_scripts": ["myllm=myllm_mc.cli:main", "myllm-lm-eval=myllm_mc.evaluate.lm_eval_cli:main"]},
)

"""Shared fixtures: one single-process gloo group for the whole session (megatron-core needs its groups even
on one rank), re-laid out per test by `init_distributed`.

Tiers: `python -m pytest -q tests` runs the fast tier (in-process unit and parity tests); `-m slow` runs the slow
one (multi-process launches, the quickstart, servers, a browser, Slurm/MPI, llama.cpp). `--order reverse` or
`--order random:SEED` runs the tests in another order, to show that none depends on what ran before it.
"""

import random

import pytest

# The slow tier beyond the tests marked `@pytest.mark.slow` in their files: whole folders or tests (a node id
# prefix) that launch processes or take tens of seconds, with why. The fast tier keeps each stage's in-process
# tests; these run in CI's second command (`-m slow`).
SLOW_TIMEOUT_S = 1200     # a slow-tier test, its fixtures included (a model trained first), may take this long
SLOW = {
    "tests/serve/": "a `myllm serve` process, and the model it serves trained first",
    "tests/infer/test_layouts.py": "torchrun: TP=2 and PP=2 generation",
    "tests/align/test_moe_finetune.py::test_generate_at_ep2": "torchrun: MoE generation at expert parallelism 2",
    "tests/infer/test_cli.py::test_chat_in_a_terminal": "`myllm chat` in a pseudo-terminal",
    "tests/infer/test_draft_model.py::test_generate_with_a_draft_model": "`myllm generate` loading a target and a draft",
    "tests/bench/test_bench_sweep.py": "a layout sweep: one torchrun per layout",
    "tests/bench/test_decode_bench.py": "decode benchmark subprocesses",
    "tests/bench/test_gpu_check.py": "the whole GPU check script on CPU",
    "tests/model/test_compile.py": "torch.compile of every layer",
    "tests/data/test_data_preprocess.py::test_workers_1_and_2": "preprocessing with worker pools, three runs",
    "tests/data/test_data_preprocess.py::test_strict_stops_promptly": "a worker pool stopped mid-run",
    "tests/data/test_data_preprocess.py::test_merge_tool_alone": "tools as subprocesses",
    "tests/data/test_data_preprocess.py::test_interrupted_run": "a preprocessing process killed by a signal",
    "tests/data/test_data_preprocess.py::test_strict_and_missing_inputs": "tools as subprocesses",
    "tests/data/test_data_chat.py::test_cli_chat_mode": "the chat preprocessing CLI with workers",
    "tests/interop/test_export_check.py": "a model trained, exported and read back by transformers/llama.cpp",
    "tests/interop/test_hf_interop.py::test_hf_export_matches_transformers_from_every_layout": "torchrun layouts",
    "tests/interop/test_gguf_interop.py::test_llama_cpp": "llama.cpp (installed by tools/install_llama_cpp.sh)",
    "tests/interop/test_moe_interop.py::test_moe_export_check_as_users_run_it": "two `myllm export --check`"
    " subprocesses (transformers, llama.cpp)",
    "tests/train/test_lm_eval_training.py::test_training_time": "`myllm train` with lm-eval, then `myllm eval`",
    "tests/data/test_dali_loader.py::test_cpu_pipeline": "NVIDIA DALI, a 424 MB wheel .ci/run installs for this tier",
}


def pytest_addoption(parser):
    parser.addoption("--order", default="file", metavar="file|reverse|random:SEED",
                     help="test order: as collected (default), reversed, or shuffled with a seed")


def pytest_collection_modifyitems(config, items):
    root = config.rootpath
    for item in items:
        nodeid = item.nodeid if item.nodeid.startswith("tests/") else str(item.path.relative_to(root)) + "::" + item.name
        if any(nodeid.startswith(prefix) for prefix in SLOW):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))     # the fast tier's 300 s is pyproject's
    order = config.getoption("--order")
    if order == "reverse":
        items.reverse()
    elif order.startswith("random:"):
        random.Random(int(order.split(":", 1)[1])).shuffle(items)
    elif order != "file":
        raise pytest.UsageError(f"--order {order!r}: use file, reverse or random:SEED (e.g. random:1)")


@pytest.fixture(scope="session")
def tiny_cfg():
    from myllm_mc.config import load

    return load("configs/tiny.yaml", ["model.seq_length=128", "training.micro_batch_size=1",
                                      "training.global_batch_size=4"], world_size=1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Config overrides that point the tiny preset at freshly built tokenizer + shards (a small, fast shape);
    built once per session for every test directory that trains."""
    from pathlib import Path

    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.data.tokenizer_training import train_tokenizer

    repo = Path(__file__).resolve().parents[1]
    root = tmp_path_factory.mktemp("tiny-data")
    corpus = [repo / "data" / "corpus.jsonl.zst"]
    train_tokenizer(corpus, 8192, root / "tokenizer")
    preprocess(corpus, str(root / "corpus"), str(root / "tokenizer" / "tokenizer.json"), workers=0, progress=False)
    return [f"data.tokenizer={root / 'tokenizer' / 'tokenizer.json'}", f"data.blend=[{root / 'corpus_text_document'}]",
            "model.seq_length=128", "training.micro_batch_size=4", "training.global_batch_size=8",
            "training.eval_interval=0", "schedule.warmup_steps=5", "logging.log_interval=1",
            "logging.tensorboard=false", "logging.plot=false"]


@pytest.fixture
def single_rank(tiny_cfg):
    """torch.distributed with one gloo rank and megatron groups at tensor=pipeline=1, seeded; yields the config."""
    from myllm_mc.parallel.state import init_distributed

    init_distributed(tiny_cfg)
    yield tiny_cfg


def pytest_sessionfinish(session, exitstatus):
    import sys

    if "myllm_mc.parallel.state" in sys.modules:
        sys.modules["myllm_mc.parallel.state"].destroy()

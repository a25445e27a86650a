"""`myllm serve` through the official `openai` client: completions, chat, streaming, stop strings, usage, seeds.

The model memorised eight sentences, so greedy text is known in advance ("The quick brown" → " fox jumps over the
lazy dog ..."), and every count can be checked against the tokenizer."""

from __future__ import annotations

import re

import pytest

openai = pytest.importorskip("openai", reason="the serve extra is not installed (pip install -e '.[serve]')")

from tests.serve.serve_helpers import API_KEY  # noqa: E402

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The quick brown"}]


@pytest.fixture(scope="module")
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tokenizer(serve_model):
    from myllm_mc.data.tokenizer import Tokenizer

    overrides, _ = serve_model
    return Tokenizer(next(o.split("=", 1)[1] for o in overrides if o.startswith("data.tokenizer=")))


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]


def test_completion_greedy_text_and_usage(client, tokenizer):
    done = client.completions.create(model="tiny", prompt="The quick brown", max_tokens=12, temperature=0)
    choice = done.choices[0]
    assert choice.text.startswith(" fox jumps over the lazy dog"), choice.text
    assert choice.finish_reason == "length"
    assert done.usage.prompt_tokens == len(tokenizer.encode("The quick brown"))
    assert done.usage.completion_tokens == 12 == len(tokenizer.encode(choice.text))
    assert done.usage.total_tokens == done.usage.prompt_tokens + 12
    assert done.object == "text_completion" and done.id.startswith("cmpl-")


def test_streaming_chat_reassembles_to_the_non_streaming_greedy_text(client, tokenizer):
    full = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=24, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=24, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = full.choices[0].message.content
    assert len(text) > 20 and full.choices[0].message.role == "assistant"
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5    # really streamed, piecewise
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    prompt_ids = tokenizer.encode_chat(CHAT, add_generation_prompt=True)[0]    # the SFT template
    streamed_usage, full_usage = chunks[-1].usage.model_dump(), full.usage.model_dump()
    # the second request repeats the first one's prompt: the engine's prefix cache serves its whole 16-token blocks
    cached = streamed_usage.pop("prompt_tokens_details")["cached_tokens"]
    assert cached == (len(prompt_ids) - 1) // 16 * 16 >= full_usage.pop("prompt_tokens_details")["cached_tokens"]
    assert chunks[-1].choices == [] and streamed_usage == full_usage
    assert full.usage.prompt_tokens == len(prompt_ids)
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)


def test_stop_sequence_cuts_the_text_streaming_and_not(client):
    kwargs = dict(model="tiny", prompt="The quick brown", max_tokens=30, temperature=0, stop=["river", "zebra"])
    done = client.completions.create(**kwargs)
    assert done.choices[0].text == " fox jumps over the lazy dog near the "
    assert done.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(**kwargs, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_logprobs_cover_every_sampled_token(client):
    done = client.completions.create(model="tiny", prompt="Water boils", max_tokens=8, temperature=0, logprobs=0)
    lp = done.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == done.usage.completion_tokens == 8
    assert "".join(lp.tokens) == done.choices[0].text
    assert all(-20 < x <= 0 for x in lp.token_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(8)]
    chat = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=5, temperature=0, logprobs=True)
    assert len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens


def test_seeded_sampling_is_reproducible_and_n_gives_distinct_choices(client):
    kwargs = dict(model="tiny", prompt="The", max_tokens=16, temperature=1.5, seed=7, n=2)
    first = client.completions.create(**kwargs)
    second = client.completions.create(**kwargs)
    texts = [c.text for c in first.choices]
    assert texts == [c.text for c in second.choices]          # same seed, same text, whatever the batch held
    assert len(first.choices) == 2 and [c.index for c in first.choices] == [0, 1]
    assert first.usage.model_dump() == second.usage.model_dump()
    assert first.usage.prompt_tokens == 2 * 1 and 2 <= first.usage.completion_tokens <= 32
    streamed = ["", ""]
    for chunk in client.completions.create(**kwargs, stream=True):
        for c in chunk.choices:
            streamed[c.index] += c.text
    assert streamed == texts


def test_metrics_count_the_tokens_served(api_server, client):
    with api_server.client() as http:
        before = http.get("/metrics").text
        done = client.completions.create(model="tiny", prompt="Children play", max_tokens=10, temperature=0)
        after = http.get("/metrics").text
    assert "# TYPE myllm_request_latency_seconds histogram" in after
    assert _metric(after, "myllm_completion_tokens_total") - _metric(before, "myllm_completion_tokens_total") == \
        done.usage.completion_tokens
    assert _metric(after, "myllm_prompt_tokens_total") - _metric(before, "myllm_prompt_tokens_total") == \
        done.usage.prompt_tokens
    ok = r'myllm_requests_total{route="/v1/completions",status="200"} (\d+)'
    assert int(re.search(ok, after).group(1)) == int(re.search(ok, before).group(1)) + 1
    assert _metric(after, "myllm_requests_in_flight") == 0

"""The batcher on the real generator, in-process: requests that arrive together share every decode step and each
gets exactly its solo greedy tokens; a request past its deadline ends "timeout"; a cancelled one leaves the batch."""

from __future__ import annotations

import asyncio
import time

import pytest

from myllm_mc.serve.batcher import Batcher, FinishEvent, Job
from myllm_mc.serve.metrics import ServerMetrics

PROMPTS = ["The quick", "Rain falls", "Children play", "Water boils"]


@pytest.fixture(scope="module")
def serve_generator(serve_model):
    from myllm_mc.infer.loader import inference_config, load_generator

    overrides, checkpoint = serve_model
    cfg = inference_config("configs/tiny.yaml", overrides, world_size=1)
    return load_generator(cfg, checkpoint, max_batch_size=4, seed=0)


def _greedy(tokens: int):
    from myllm_mc.infer.sampling import SamplingParams

    return SamplingParams(max_new_tokens=tokens, temperature=0.0, ignore_eos=True)


async def _drain(job: Job, cancel_after: int | None = None):
    text, ids = "", []
    while True:
        event = await asyncio.wait_for(job.events.get(), 60)
        if isinstance(event, FinishEvent):
            return text, ids, event
        text += event.text
        ids += event.token_ids
        if cancel_after is not None and len(ids) >= cancel_after:
            job.cancel()


def test_requests_arriving_together_share_every_decode_step(serve_generator):
    generator = serve_generator
    prompts = [generator.tokenizer.encode(p) for p in PROMPTS]
    solo = [generator.generate([p], _greedy(12))[0] for p in prompts]
    batcher = Batcher(generator, ServerMetrics(), max_rows=4, batch_wait_s=0.05).start()

    async def scenario():
        loop = asyncio.get_running_loop()
        jobs = [batcher.submit(Job(p, _greedy(12), loop, time.monotonic() + 60)) for p in prompts]
        return await asyncio.gather(*(_drain(j) for j in jobs))

    try:
        results = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert [ids for _, ids, _ in results] == [c.token_ids for c in solo]
    assert [text for text, _, _ in results] == [c.text for c in solo]
    assert all(f.finish_reason == "length" and f.completion_tokens == 12 for _, _, f in results)
    # one prefill step for all four (first tokens), then 11 decode steps of four rows each
    assert (batcher.steps, batcher.max_rows_seen) == (12, 4)


def test_deadline_and_cancel_end_rows_and_the_others_carry_on(serve_generator):
    generator = serve_generator
    prompts = [generator.tokenizer.encode(p) for p in PROMPTS[:3]]
    reference = generator.generate([prompts[2]], _greedy(20))[0]
    batcher = Batcher(generator, ServerMetrics(), max_rows=4, batch_wait_s=0.05).start()

    async def scenario():
        loop = asyncio.get_running_loop()
        late = Job(prompts[0], _greedy(20), loop, deadline=time.monotonic() - 1)      # already past its time
        leaving = Job(prompts[1], _greedy(20), loop, deadline=time.monotonic() + 60)
        staying = Job(prompts[2], _greedy(20), loop, deadline=time.monotonic() + 60)
        for job in (late, leaving, staying):
            batcher.submit(job)
        return await asyncio.gather(_drain(late), _drain(leaving, cancel_after=3), _drain(staying))

    try:
        (_, _, late), (_, left_ids, left), (text, ids, stayed) = asyncio.run(scenario())
    finally:
        batcher.stop()
    assert late.finish_reason == "timeout"
    assert left.finish_reason == "cancelled" and 3 <= len(left_ids) < 20
    assert stayed.finish_reason == "length" and ids == reference.token_ids and text == reference.text
    assert not generator.has_work() and batcher.live_rows == 0

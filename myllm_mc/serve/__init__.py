"""`myllm serve`: an OpenAI-compatible HTTP server over the generation engine (myllm_mc.infer) — continuous
batching across requests (batcher.py), request schemas and limits, Prometheus-style metrics, SSE streaming and
the chat page at `/` (static/chat.html). See docs/serving.md."""

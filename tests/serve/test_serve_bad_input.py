"""Bad input → the right status and an OpenAI-style JSON error naming the problem; the server keeps serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.serve.serve_helpers import REPO

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
HI = [{"role": "user", "content": "hi"}]

# (case, method, path, body (dict → JSON, str/bytes → raw), headers, status, error.param or None, text in message)
TABLE = [
    ("malformed JSON", "POST", CHAT, '{"messages": [', {}, 400, None, "not valid JSON"),
    ("not UTF-8", "POST", CHAT, b'{"prompt": "\xff\xfe"}', {}, 400, None, "not valid JSON"),
    ("body is a list", "POST", CHAT, [1, 2], {}, 400, None, "must be a JSON object"),
    ("empty messages", "POST", CHAT, {"messages": []}, {}, 422, "messages", "at least one message"),
    ("messages missing", "POST", CHAT, {"max_tokens": 3}, {}, 422, "messages", "required"),
    ("unknown role", "POST", CHAT, {"messages": [{"role": "robot", "content": "x"}]}, {}, 422, "messages.0.role",
     "'system', 'user' or 'assistant'"),
    ("content not a string", "POST", CHAT, {"messages": [{"role": "user", "content": 5}]}, {}, 422,
     "messages.0.content", "valid string"),
    ("temperature a string", "POST", CHAT, {"messages": HI, "temperature": "hot"}, {}, 422, "temperature", "number"),
    ("max_tokens a string", "POST", CHAT, {"messages": HI, "max_tokens": "5"}, {}, 422, "max_tokens", "integer"),
    ("negative max_tokens", "POST", COMPLETIONS, {"prompt": "x", "max_tokens": -1}, {}, 422, "max_tokens",
     "greater than or equal to 1"),
    ("temperature above 2", "POST", COMPLETIONS, {"prompt": "x", "temperature": 3}, {}, 422, "temperature",
     "less than or equal to 2"),
    ("negative temperature", "POST", COMPLETIONS, {"prompt": "x", "temperature": -0.5}, {}, 422, "temperature",
     "must be >= 0"),
    ("top_p zero", "POST", CHAT, {"messages": HI, "top_p": 0}, {}, 422, "top_p", "must be in (0, 1]"),
    ("unknown field", "POST", COMPLETIONS, {"prompt": "x", "max_token": 5}, {}, 422, "max_token", "unknown field"),
    ("empty prompt", "POST", COMPLETIONS, {"prompt": ""}, {}, 422, "prompt", "empty"),
    ("token id outside the vocabulary", "POST", COMPLETIONS, {"prompt": [1, 99999]}, {}, 400, "prompt",
     "outside the vocabulary"),
    ("max_tokens above the server limit", "POST", COMPLETIONS, {"prompt": "x", "max_tokens": 49}, {}, 400,
     "max_tokens", "limit 48"),
    ("prompt + max_tokens over the context", "POST", COMPLETIONS, {"prompt": "The " * 40, "max_tokens": 30}, {},
     400, "max_tokens", "context of 64 tokens"),
    ("prompt longer than the context", "POST", COMPLETIONS, {"prompt": "Rain falls " * 60}, {}, 400, "prompt",
     "tokens, more than the limit 63"),
    ("too many stop strings", "POST", COMPLETIONS, {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, {}, 422,
     "stop", "at most 4"),
    ("unsupported tools", "POST", CHAT, {"messages": HI, "tools": [{"type": "function"}]}, {}, 400, "tools",
     "not supported"),
    ("unknown model", "POST", CHAT, {"messages": HI, "model": "gpt-4"}, {}, 404, "model", "not served here"),
    ("oversized body", "POST", COMPLETIONS, {"prompt": "x" * 70_000}, {}, 413, None, "larger than 65536 bytes"),
    ("missing API key", "POST", CHAT, {"messages": HI}, {"Authorization": None}, 401, None, "API key missing"),
    ("wrong API key", "GET", "/v1/models", None, {"Authorization": "Bearer nope"}, 401, None, "API key wrong"),
    ("metrics need the key too", "GET", "/metrics", None, {"Authorization": None}, 401, None, "API key missing"),
    ("wrong method", "GET", COMPLETIONS, None, {}, 405, None, "not allowed"),
    ("unknown route", "POST", "/v1/embeddings", {"input": "x"}, {}, 404, None, "no route /v1/embeddings"),
]


@pytest.mark.parametrize("case,method,path,body,headers,status,param,text", TABLE, ids=[row[0] for row in TABLE])
def test_bad_input_gets_a_clear_json_error(api_server, case, method, path, body, headers, status, param, text):
    with api_server.client() as http:
        for name, value in headers.items():
            if value is None:
                http.headers.pop(name, None)
            else:
                http.headers[name] = value
        content = body if isinstance(body, (str, bytes)) else None if body is None else json.dumps(body)
        response = http.request(method, path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert text in error["message"], error
    assert error["param"] == param and error["type"]
    assert "\n" not in error["message"]


def test_health_and_the_static_page_need_no_key(api_server):
    with api_server.client(key=None) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert "<title>myllm chat</title>" in http.get("/").text


def test_server_keeps_serving_after_the_bad_input(api_server):
    with api_server.client() as http:
        for row in TABLE[:5]:                  # once more, back to back
            http.post(row[2], content=row[3] if isinstance(row[3], (str, bytes)) else json.dumps(row[3]))
        done = http.post(COMPLETIONS, json={"prompt": "The quick brown", "max_tokens": 6, "temperature": 0})
        assert done.status_code == 200 and done.json()["choices"][0]["text"].startswith(" fox")
        metrics = http.get("/metrics").text
    assert 'status="422"' in metrics and 'status="413"' in metrics and 'status="401"' in metrics


def test_the_cli_refuses_bad_arguments_in_one_line_before_loading_the_model(serve_model):
    overrides, checkpoint = serve_model
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {"--port": (["--checkpoint", str(checkpoint), "--port", str(port)], "is already in use"),
                 "--checkpoint": (["--checkpoint", str(checkpoint) + "-missing"], "does not exist")}
        for flag, (args, text) in cases.items():
            done = subprocess.run([sys.executable, "-m", "myllm_mc.cli", "serve", "configs/tiny.yaml", *args,
                                   "--set", *overrides], cwd=REPO, capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
            last = done.stderr.strip().splitlines()[-1]
            assert done.returncode == 2 and text in last and "fix:" in last, (flag, done.stderr[-2000:])
            assert "serving" not in done.stdout

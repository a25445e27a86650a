"""Request bodies of the OpenAI-compatible API, validated strictly, and the error body every failure returns.

Why strict (unknown fields rejected, no type coercion): a typo such as `max_token` or `"temperature": "hot"`
silently ignored would give a client a different generation than it asked for; an error that names the field
costs one round trip. Fields the OpenAI clients send that this server cannot honour (tools, penalties, ...) are
accepted only at their neutral value, and otherwise refused by name.
"""

from __future__ import annotations

from typing import Any, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_SEQUENCES = 4
# Sampling defaults are the OpenAI API's: temperature 1.0 (= infer.sampling.DEFAULT_TEMPERATURE, stated here so this
# module imports no torch; tests/serve checks they agree) and top_p 1.0, within the API's temperature range [0, 2].
# Whether a value can be sampled with is decided by SamplingParams.check (serve/app.py `_params`), not here.
API_DEFAULT_TEMPERATURE = 1.0
API_MAX_TEMPERATURE = 2.0
MAX_N = 4
MAX_TOP_LOGPROBS = 5
# a seed is a 64-bit integer (torch.Generator.manual_seed refuses more; choice i of n uses seed + i, still in range)
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


class ApiError(Exception):
    """An HTTP error with an OpenAI-style body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: Optional[str] = None,
                 code: Optional[str] = None, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.kind, self.param, self.code)


def error_body(message: str, kind: str = "invalid_request_error", param: Optional[str] = None,
               code: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class _Sampling(_Strict):
    """What completions and chat completions share: sampling, limits, stop strings, streaming."""

    model: Optional[str] = None
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: float = Field(default=API_DEFAULT_TEMPERATURE, le=API_MAX_TEMPERATURE)
    top_p: float = 1.0
    n: int = Field(default=1, ge=1, le=MAX_N)
    stop: Union[str, List[str], None] = None
    seed: Optional[int] = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # accepted only at their neutral values (the OpenAI clients may send them)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[dict] = None

    @field_validator("temperature", "top_p", "presence_penalty", "frequency_penalty", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:      # strict mode refuses an int for a float; JSON `1` means 1.0
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("stop")
    @classmethod
    def _stop(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty strings")
        return stops

    def unsupported(self) -> Optional[tuple]:
        """(param, message) for a field set to a value this server does not implement, else None."""
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name) != 0.0:
                return name, f"{name} is not supported by this server — fix: leave it at 0"
        if self.logit_bias:
            return "logit_bias", "logit_bias is not supported by this server — fix: omit it"
        return None


class CompletionRequest(_Sampling):
    prompt: Union[str, List[int]]
    logprobs: Optional[int] = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    suffix: Optional[str] = None
    best_of: Optional[int] = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value):
        if isinstance(value, str) and value == "":
            raise ValueError("the prompt is empty")
        if isinstance(value, list) and not value:
            raise ValueError("the prompt token list is empty")
        return value

    def unsupported(self) -> Optional[tuple]:
        if self.echo:
            return "echo", "echo is not supported by this server — fix: omit it"
        if self.suffix:
            return "suffix", "suffix (insertion) is not supported by this server — fix: omit it"
        if self.logprobs:
            return "logprobs", ("only logprobs: 0 is supported (the log-prob of each sampled token; no top "
                                "alternatives) — fix: send logprobs: 0")
        if self.best_of not in (None, 1):
            return "best_of", "best_of is not supported by this server — fix: use n"
        return super().unsupported()


class ChatCompletionRequest(_Sampling):
    messages: List[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    tools: Optional[list] = None
    tool_choice: Optional[Any] = None
    response_format: Optional[dict] = None

    def unsupported(self) -> Optional[tuple]:
        if self.tools:
            return "tools", "tool calling is not supported by this server — fix: omit tools"
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            return "response_format", "only response_format {\"type\": \"text\"} is supported — fix: omit it"
        if self.top_logprobs:
            return "top_logprobs", ("top_logprobs is not supported (logprobs: true gives each sampled token's "
                                    "log-prob) — fix: omit it or send 0")
        return super().unsupported()

    def requested_max_tokens(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def parse(model: type, payload: Any):
    """Validate a decoded JSON body; raise ApiError(422) naming the first bad field and what it should be."""
    if not isinstance(payload, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(payload).__name__}",
                       code="invalid_body")
    try:
        request = model.model_validate(payload)
    except ValidationError as err:
        first = err.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(422, f"{param}: {_message(first)}", param=param, code=first["type"]) from None
    bad = request.unsupported()
    if bad:
        raise ApiError(400, bad[1], param=bad[0], code="unsupported_parameter")
    return request


def _message(error: dict) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown field — fix: remove it (see the OpenAI API reference for the accepted fields)"
    if kind == "missing":
        return "required field is missing"
    if kind == "too_short" and error["loc"] and error["loc"][0] == "messages":
        return "messages must hold at least one message — fix: send [{\"role\": \"user\", \"content\": \"...\"}]"
    return message[0].lower() + message[1:] if message else kind

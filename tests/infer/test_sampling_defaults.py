"""One default temperature for every surface (SamplingParams, `myllm generate`, `myllm chat`, the server), and one
place that decides whether sampling values are valid (SamplingParams.check). No model is loaded."""

import argparse

import pytest

from myllm_mc.infer.generate_cli import add_sampling_arguments, sampling_from
from myllm_mc.infer.sampling import DEFAULT_TEMPERATURE, GenerationError, SamplingParams


def _cli_defaults(prog: str):
    from myllm_mc.infer import chat_cli, generate_cli
    parser = {"generate": generate_cli._parser, "chat": chat_cli._parser}[prog]()
    source = ["--prompt", "x"] if prog == "generate" else []
    return parser.parse_args(["configs/tiny.yaml", "--checkpoint", "ckpt", *source])


def test_every_surface_defaults_to_one_temperature():
    from myllm_mc.serve.schemas import API_DEFAULT_TEMPERATURE, ChatCompletionRequest, CompletionRequest

    assert SamplingParams().temperature == DEFAULT_TEMPERATURE == 1.0
    assert _cli_defaults("generate").temperature == _cli_defaults("chat").temperature == DEFAULT_TEMPERATURE
    assert API_DEFAULT_TEMPERATURE == DEFAULT_TEMPERATURE                       # the OpenAI API's default too
    assert CompletionRequest(prompt="x").temperature == DEFAULT_TEMPERATURE
    assert ChatCompletionRequest(messages=[{"role": "user", "content": "x"}]).temperature == DEFAULT_TEMPERATURE


@pytest.mark.parametrize("flags, param", [
    (["--temperature", "-0.1"], "temperature"), (["--top-k", "-1"], "top_k"), (["--top-p", "0"], "top_p"),
    (["--top-p", "1.5"], "top_p"), (["--max-new-tokens", "0"], "max_new_tokens"),
])
def test_bad_sampling_values_are_refused_by_sampling_params_naming_the_field(flags, param):
    parser = argparse.ArgumentParser()
    add_sampling_arguments(parser)
    args = parser.parse_args(["--checkpoint", "c", *flags])
    with pytest.raises(GenerationError) as err:
        sampling_from(args)
    assert err.value.param == param and str(err.value).startswith(f"{param}=") and "— fix:" in str(err.value)

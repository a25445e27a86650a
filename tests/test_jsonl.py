"""The one JSONL reader (myllm_mc/jsonl.py) and the one-line errors its callers give for a line that is not JSON."""

import types

import pytest

from myllm_mc.jsonl import MalformedJsonl, read_jsonl


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_records_come_with_their_line_numbers_and_blank_lines_are_skipped(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"a": 1}\n\n  \n[2]\n"s"\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, [2]), (5, "s")]


def test_a_malformed_line_raises_one_line_naming_file_and_line_or_is_counted(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"a": 1}\n{not json\n{"b": 2}\n')
    with pytest.raises(MalformedJsonl) as err:
        list(read_jsonl(path))
    assert str(err.value) == (f"{path}:2: not JSON (Expecting property name enclosed in double quotes)"
                              " — fix: one JSON object per line")
    assert isinstance(err.value, ValueError) and err.value.line == 2
    bad = []
    assert [n for n, _ in read_jsonl(path, on_malformed=bad.append)] == [1, 3]
    assert [b.line for b in bad] == [2]


def test_reading_stops_where_the_caller_stops(tmp_path):
    path = _write(tmp_path / "a.jsonl", '{"a": 1}\n{not json\n')
    assert next(read_jsonl(path)) == (1, {"a": 1})


def test_eval_text_and_generate_prompts_report_the_bad_line(tmp_path):
    from myllm_mc.evaluate.inputs import EvalError, read_text_documents
    from myllm_mc.infer.generate_cli import read_requests
    from myllm_mc.infer.sampling import GenerationError

    path = _write(tmp_path / "t.jsonl", '{"text": "one"}\n{"text": \n')
    with pytest.raises(EvalError, match=r"t\.jsonl:2: not JSON \(.*\) — fix: one JSON object per line$"):
        read_text_documents(str(path))
    assert read_text_documents(str(path), max_documents=1) == ["one"]           # never reaches the bad line
    path = _write(tmp_path / "p.jsonl", '{"prompt": "one"}\n{"prompt": \n')
    args = types.SimpleNamespace(prompt=None, prompts=str(path))
    with pytest.raises(GenerationError, match=r"p\.jsonl:2: not JSON \(.*\) — fix: one JSON object per line$"):
        read_requests(args, tokenizer=None, max_seq=16)

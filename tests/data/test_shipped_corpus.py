"""The tiny preset prepares the shipped corpus itself on first use (only for the preset's own paths)."""

from myllm_mc.config import load
from myllm_mc.data import shipped


def test_only_the_presets_missing_paths_are_prepared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                    # a fresh clone: nothing under runs/
    cfg = load(shipped.REPO / "configs" / "tiny.yaml", world_size=1)
    assert shipped.needs_preparing(cfg)
    other = load(shipped.REPO / "configs" / "tiny.yaml", ["data.tokenizer=elsewhere/tokenizer.json"], world_size=1)
    assert not shipped.needs_preparing(other)                      # a user's path: the usual error, no guessing
    (tmp_path / "runs" / "tokenizer-8k").mkdir(parents=True)
    (tmp_path / "runs" / "tokenizer-8k" / "tokenizer.json").write_text("{}")
    (tmp_path / "runs" / "data").mkdir()
    for ext in (".bin", ".idx"):
        (tmp_path / "runs" / "data" / f"corpus_text_document{ext}").write_bytes(b"")
    assert not shipped.needs_preparing(cfg)                        # already there: done once

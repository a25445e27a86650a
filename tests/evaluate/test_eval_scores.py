"""Eval figures against their definitions: perplexity = exp(the training loop's mean token loss) on the same
tokens, bits per byte = total NLL / ln 2 / UTF-8 bytes, the indexed-dataset path gives the same stream and bytes
as the text path, and multiple choice picks the gold continuation where a model trained in-test must."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.evaluate.conftest import model_cfg


def _training_loop_loss(chunk, stream, seq):
    """Mean token loss as the training loop reports it: GPTDataset-style samples of seq + 1 tokens through
    megatron's forward-only schedule with `forward_step`/`lm_loss`, reduced by `reduce_loss`."""
    from myllm_mc.model import forward_step, reduce_loss
    from myllm_mc.train.step import run_schedule

    batches = []
    for i in range((len(stream) - 1) // seq):
        sample = torch.tensor(stream[i * seq:i * seq + seq + 1])
        batches.append({"tokens": sample[None, :-1], "labels": sample[None, 1:], "loss_mask": torch.ones(1, seq),
                        "position_ids": torch.arange(seq)[None]})
    with torch.no_grad():
        store = run_schedule([chunk], forward_step, [iter(batches)], len(batches), seq, 1, forward_only=True)
    return reduce_loss(store), len(batches) * seq


def test_perplexity_is_exp_of_the_training_loss_and_bits_per_byte_counts_utf8_bytes(fresh_model, eval_tokenizer,
                                                                                     sample_texts):
    from myllm_mc.evaluate import score_stream
    from myllm_mc.evaluate.inputs import text_source

    cfg, chunk = fresh_model
    chunk.eval()
    seq = cfg.model.seq_length
    path, docs = sample_texts
    source = text_source(str(path), eval_tokenizer)
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    expected = [eval_tokenizer.eod]
    for d in docs:
        expected += eval_tokenizer.encode(d) + [eval_tokenizer.eod]
    assert source.stream == expected and source.nbytes == nbytes and source.documents == 6

    whole = (len(source.stream) - 1) // seq * seq + 1            # whole windows only: what training sees
    train_loss, train_tokens = _training_loop_loss(chunk, source.stream[:whole], seq)
    result = score_stream(chunk, source.stream[:whole], seq, nbytes, batch_size=3)
    print(f"perplexity {result.perplexity:.4f} over {result.tokens} tokens; training loss {train_loss:.6f} "
          f"→ exp {math.exp(train_loss):.4f}; |Δ mean NLL| {abs(result.mean_nll - train_loss):.2e}")
    assert result.tokens == train_tokens and result.windows == (whole - 1) // seq
    assert abs(result.mean_nll - train_loss) < 1e-5
    assert abs(result.perplexity / math.exp(train_loss) - 1) < 1e-5
    assert 2.0 < train_loss < 12.0                                # not a degenerate model (ln 1024 = 6.93)

    full = score_stream(chunk, source.stream, seq, nbytes, batch_size=4)   # with a padded last window
    assert full.tokens == len(source.stream) - 1 and full.windows == math.ceil((len(source.stream) - 1) / seq)
    assert full.bits_per_byte == full.nll_sum / math.log(2) / nbytes
    # the padded last window adds exactly its own tokens' loss (padding contributes nothing)
    assert (len(source.stream) - 1) % seq != 0                  # so there is a padded window to check
    alone = score_stream(chunk, source.stream[whole - 1:], seq, 0)
    assert alone.windows == 1 and alone.tokens == len(source.stream) - whole
    assert abs(full.nll_sum - (result.nll_sum + alone.nll_sum)) < 1e-6 * full.nll_sum
    print(f"bits per byte {full.bits_per_byte:.4f} ({full.nll_sum:.2f} nats over {nbytes} bytes, "
          f"{full.bytes_per_token:.2f} bytes/token)")


def test_an_indexed_dataset_scores_the_same_stream_and_bytes_as_its_text(eval_model, eval_tokenizer, sample_texts,
                                                                         tmp_path):
    from myllm_mc.data.preprocess import preprocess
    from myllm_mc.evaluate.inputs import data_source, text_source, valid_source

    path, docs = sample_texts
    preprocess([path], str(tmp_path / "docs"), eval_model["tokenizer"], workers=0, progress=False)
    indexed = data_source(str(tmp_path / "docs_text_document"), eval_tokenizer)
    text = text_source(str(path), eval_tokenizer)
    assert indexed.stream == text.stream and indexed.nbytes == text.nbytes and indexed.documents == 6
    assert data_source(str(tmp_path / "docs_text_document"), eval_tokenizer, max_documents=2).documents == 2
    # --valid: the documents megatron's split gives the validation part (split 4,2,0: the last two of six)
    cfg = model_cfg(eval_model, f"data.blend=[{tmp_path / 'docs_text_document'}]", "data.split=4,2,0")
    valid = valid_source(cfg, eval_tokenizer)
    last_two = [eval_tokenizer.eod]
    for d in docs[4:6]:
        last_two += eval_tokenizer.encode(d) + [eval_tokenizer.eod]
    assert valid.stream == last_two and valid.documents == 2
    assert valid.nbytes == sum(len(d.encode("utf-8")) for d in docs[4:6])


FACTS = [("The river in the north is", " cold and fast."), ("My neighbour keeps", " three grey geese."),
         ("On Sundays the baker sells", " apple bread."), ("The old lighthouse is painted", " red and white."),
         ("Her favourite instrument is the", " violin."), ("The train to the coast leaves at", " nine sharp.")]


def _train(chunk, tokenizer, steps=40):
    """Adam on the six full sentences (each with the end-of-document id before it) until they are memorised."""
    rows = [[tokenizer.eod] + tokenizer.encode(c + a) for c, a in FACTS]
    width = max(map(len, rows)) - 1
    tokens = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.zeros_like(tokens)
    mask = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        n = len(r) - 1
        tokens[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r[:-1]), torch.tensor(r[1:]), 1
    chunk.train()
    opt = torch.optim.Adam(chunk.parameters(), lr=3e-3)
    positions = torch.arange(width)[None].expand(len(rows), -1)
    for _ in range(steps):
        opt.zero_grad()
        loss = (chunk(tokens, positions, None, labels=labels) * mask).sum() / mask.sum()
        loss.backward()
        opt.step()
    chunk.eval()
    return loss.item()


def test_multiple_choice_picks_the_memorised_continuation_and_a_shuffled_gold_does_not(fresh_model, eval_tokenizer,
                                                                                      tmp_path):
    from myllm_mc.evaluate import read_mc_file, score_choices

    cfg, chunk = fresh_model
    answers = [a for _, a in FACTS]
    records = []
    for i, (context, _) in enumerate(FACTS):        # every choice is some sentence's true ending
        order = answers[i:] + answers[:i]
        records.append({"context": context, "choices": order[:4], "gold": 0})
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    shuffled = [dict(r, gold=1 + i % 3) for i, r in enumerate(records)]
    (tmp_path / "control.jsonl").write_text("".join(json.dumps(r) + "\n" for r in shuffled))

    mc, control = read_mc_file(str(tmp_path / "mc.jsonl")), read_mc_file(str(tmp_path / "control.jsonl"))
    before = score_choices(chunk, eval_tokenizer, mc, cfg.model.seq_length)
    loss = _train(chunk, eval_tokenizer)
    after = score_choices(chunk, eval_tokenizer, mc, cfg.model.seq_length, batch_size=5)
    ctrl = score_choices(chunk, eval_tokenizer, control, cfg.model.seq_length)
    print(f"trained loss {loss:.3f}; accuracy before {before['accuracy']:.2f}, after {after['accuracy']:.2f} "
          f"(norm {after['accuracy_norm']:.2f}); shuffled gold {ctrl['accuracy']:.2f}")
    assert loss < 0.5
    assert after["accuracy"] == 1.0 and after["accuracy_norm"] == 1.0 and after["questions"] == 6
    assert ctrl["accuracy"] == 0.0 and ctrl["accuracy_norm"] == 0.0


def test_malformed_multiple_choice_records_are_counted_by_reason(tmp_path):
    from myllm_mc.evaluate import read_mc_file
    from myllm_mc.evaluate.inputs import EvalError

    lines = ['{"context": "a", "choices": [" b", " c"], "gold": 1}', "not json",
             '{"context": "a", "choices": [" b"], "gold": 0}', '{"context": "a", "choices": [" b", " c"], "gold": 2}',
             '{"context": "a", "choices": [" b", ""], "gold": 0}', '{"context": 3, "choices": [" b", " c"], "gold": 0}',
             '["a"]', '{"context": "", "choices": ["x", "y", "z"], "gold": true}', "",
             '{"context": "", "choices": ["x", "y", "z"], "gold": 2}']
    (tmp_path / "mc.jsonl").write_text("\n".join(lines) + "\n")
    mc = read_mc_file(str(tmp_path / "mc.jsonl"))
    assert [gold for _, _, gold in mc.items] == [1, 2]
    assert mc.skipped == {"malformed_json": 1, "choices_not_two_or_more_strings": 1, "gold_not_a_choice_index": 2,
                          "empty_choice": 1, "context_not_string": 1, "not_an_object": 1}
    assert mc.summary() == ("multiple choice: 2 questions from " + str(tmp_path / "mc.jsonl") + "; skipped 7 malformed"
                            " (1 choices_not_two_or_more_strings, 1 context_not_string, 1 empty_choice, "
                            "2 gold_not_a_choice_index, 1 malformed_json, 1 not_an_object)")
    (tmp_path / "bad.jsonl").write_text("\n".join(lines[1:3]) + "\n")
    with pytest.raises(EvalError, match="no valid multiple-choice record"):
        read_mc_file(str(tmp_path / "bad.jsonl"))

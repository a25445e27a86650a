"""Parameter counts against hand arithmetic (SPEC.md gives the 1B breakdown)."""

import dataclasses

from myllm_mc.plan.params import padded_vocab_size, parameter_breakdown


def test_one_b_total_is_exact(one_b):
    assert parameter_breakdown(one_b.model).total == 1_055_231_744


def test_one_b_breakdown(one_b):
    b = parameter_breakdown(one_b.model)
    assert b.embedding == 65_536 * 1_792 == 117_440_512
    # q 1792×1792 + k,v 2 × 1792×256 + o 1792×1792
    assert b.attention_per_layer == 1792 * 1792 + 2 * 1792 * 256 + 1792 * 1792 == 7_340_032
    assert b.mlp_per_layer == 3 * 1792 * 4864 == 26_148_864
    assert b.per_layer == 7_340_032 + 26_148_864 + 2 * 1792 == 33_492_480
    assert b.attention == 28 * 7_340_032
    assert b.mlp == 28 * 26_148_864
    assert b.norms == 28 * 2 * 1792 + 1_792            # final norm 1,792 included
    assert b.output_layer == 0                          # tied
    assert b.embedding + 28 * b.per_layer + 1_792 == b.total
    assert b.embedding + b.attention + b.mlp + b.norms + b.output_layer == b.total


def test_tiny_count(tiny):
    # per layer: q 256×256 + k,v 2 × 256×(2×64) + o 256×256 + MLP 3 × 256×768 + 2 norms × 256
    per_layer = 256 * 256 + 2 * 256 * 128 + 256 * 256 + 3 * 256 * 768 + 2 * 256
    assert per_layer == 786_944
    expected = 8192 * 256 + 4 * per_layer + 256
    assert parameter_breakdown(tiny.model).total == expected == 5_245_184


def test_variants_gelu_bias_layernorm_untied_learned_positions(tiny):
    m = dataclasses.replace(tiny.model, activation="gelu", add_bias=True, normalization="LayerNorm",
                            tie_embeddings=False, position_embedding="learned_absolute")
    b = parameter_breakdown(m)
    attention = 256 * (256 + 2 * 128) + 256 * 256 + (256 + 2 * 128 + 256)   # weights + q,k,v,o biases
    mlp = 2 * 256 * 768 + 768 + 256                                          # fc1, fc2 + biases
    norm = 2 * 256                                                           # LayerNorm: weight + bias
    assert b.attention_per_layer == attention
    assert b.mlp_per_layer == mlp
    assert b.norm_per_layer == norm
    assert b.embedding == 8192 * 256 + 256 * 256                             # + learned positions
    assert b.output_layer == 8192 * 256
    assert b.total == 8192 * 256 + 256 * 256 + 4 * (attention + mlp + 2 * norm) + norm + 8192 * 256


def test_mha_has_more_attention_params_than_gqa(one_b):
    mha = dataclasses.replace(one_b.model, num_query_groups=14)
    assert parameter_breakdown(mha).attention_per_layer == 4 * 1792 * 1792


def test_vocab_padding(one_b):
    assert padded_vocab_size(one_b.model, 1) == 65_536
    assert padded_vocab_size(one_b.model, 8) == 65_536            # 65,536 = 64 × 1,024: no padding
    odd = dataclasses.replace(one_b.model, vocab_size=50_257)
    assert padded_vocab_size(odd, 1) == 50_304                    # next multiple of 128
    assert padded_vocab_size(odd, 2) == 50_432                    # next multiple of 256
    b = parameter_breakdown(odd, padded_vocab=50_304)
    assert b.embedding == 50_304 * 1792

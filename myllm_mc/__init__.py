"""myllm_mc: from raw text to a served ~1B-parameter model on megatron-core."""

__version__ = "0.1.0"

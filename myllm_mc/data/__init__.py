"""Documents → tokens → training sequences: readers, tokenizer, preprocessing into megatron-core .bin/.idx,
corpus statistics, and the datasets and loaders the training loop draws from."""

import warnings

# megatron-core announces on import that Transformer Engine / Apex are absent (expected on CPU); the data stage
# uses neither, so the four warnings are noise in every tool's output.
warnings.filterwarnings("ignore", message="Transformer Engine and Apex are not installed")

"""Shared test helpers: `torchrun.run_torchrun` launches a script on N processes and returns per-rank results."""

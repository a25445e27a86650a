"""Process groups, launchers and the CPU bridge for megatron-core."""

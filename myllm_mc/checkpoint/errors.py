"""The one exception type a checkpoint problem raises: its message is one line with the cause and the fix."""

from myllm_mc.errors import MyllmError


class CheckpointError(MyllmError, RuntimeError):
    """A checkpoint that cannot be written, trusted or used by this run (locked dir, no space, damaged, mismatch)."""

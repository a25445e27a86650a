"""The one exception type a checkpoint problem raises: its message is one line with the cause and the fix."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, trusted or used by this run (locked dir, no space, damaged, mismatch)."""

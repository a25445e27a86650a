"""The configuration's error (its own module: the loader and the validator both raise it)."""

from myllm_mc.errors import MyllmError


class ConfigError(MyllmError, ValueError):
    """A configuration problem; its message is one line naming the key and the fix."""

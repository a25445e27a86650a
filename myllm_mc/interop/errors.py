"""ConversionError, torch-free, so that what only reads a config.json (the family registry, `myllm plan --from-hf`)
imports no torch."""

from __future__ import annotations

from myllm_mc.errors import MyllmError


class ConversionError(MyllmError, ValueError):
    """A file or checkpoint that cannot be converted; the message is one line naming what and the fix."""

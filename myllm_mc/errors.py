"""One line for an expected failure; the traceback only when asked for (MYLLM_DEBUG=1).

Why: a user who hits a full disk or a damaged file needs the cause and the fix, not 100 lines of stack; a
developer chasing a bug in that path sets MYLLM_DEBUG=1 and gets the full traceback as well.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

DEBUG_ENV = "MYLLM_DEBUG"


class MyllmError(Exception):
    """An expected failure (bad config, input, checkpoint, request): its message is one line naming the problem and
    the fix, so every command prints it as it is and exits 2. Each stage's error class derives from this one (and
    from the builtin it refines, ValueError or RuntimeError, for callers that catch those)."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def describe_os_error(err: OSError, doing: str = "writing", where: str | None = None) -> str:
    """`OSError` → one line naming the path (`where` when the error has none), the cause and the fix."""
    where = err.filename or where or "the output"
    if err.errno == errno.ENOSPC:
        fix = "free space there or write elsewhere"
        cause = "no space left on the device"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "write to a directory you can write to"
        cause = "read-only file system" if err.errno == errno.EROFS else "permission denied"
    else:
        fix = "check the path and the file system"
        cause = err.strerror or str(err)
    return f"{doing} {where} failed: {cause} — fix: {fix}"


def fail(prog: str, message: str, code: int, err: BaseException | None = None) -> int:
    """Print `prog: message` on stderr (and the traceback under MYLLM_DEBUG=1); return `code`."""
    if err is not None and debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    return code

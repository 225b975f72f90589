"""Keep native libraries' console logs out of the terminal.

MediaPipe, TFLite and absl write several log lines from C++ straight to file descriptor 2 on
every run; neither ``GLOG_minloglevel`` nor ``TF_CPP_MIN_LOG_LEVEL`` stops them in
mediapipe 0.10.21. :func:`native_logs_silenced` points descriptor 2 at ``/dev/null`` while
Python's ``sys.stderr`` (warnings, progress bars, errors) keeps writing to the real terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_logs_silenced(enabled: bool = True) -> Iterator[None]:
    """Within the block, native writes to stderr are dropped; Python's ``sys.stderr`` is kept."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (some notebooks, pytest capture)
        yield
        return
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(
        os.dup(saved), "w", buffering=1, encoding=getattr(python_stderr, "encoding", None), errors="backslashreplace"
    )
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        sys.stderr.close()
        sys.stderr = python_stderr


__all__ = ["native_logs_silenced"]

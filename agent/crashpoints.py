"""Crash injection for the crash-safety tests: `GUICHET_CRASHPOINT=name` makes the process SIGKILL itself
when it reaches that point, exactly as a power cut would stop it there. Unset in production: one dict lookup.

Points (see tests/core/test_crash.py): journal.create.before_commit, journal.create.after_commit,
journal.<state>.before_commit / .after_commit for each target state, sync.before_post, sync.after_post,
sync.record.before_commit, sync.record.after_commit.
"""

from __future__ import annotations

import os
import signal

_POINT = os.environ.get("GUICHET_CRASHPOINT") or None
ARMED = _POINT is not None  # hot paths test this before building a point's name


def crashpoint(name: str) -> None:
    if _POINT is not None and _POINT == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""Process locks beside the journal (flock: released by the kernel when a process dies, even by SIGKILL).

- UploadLock: one uploader per journal.
- CounterLock: one process takes payments on a counter (the UI or `guichet pay`); whoever holds it may
  settle what a dead predecessor left mid-step (Journal.recover), since nobody else is mid-payment.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import AlreadyRunning
from agent.storage import ensure_state_dir, open_private


class StateLock:
    what = "process"
    filename = "state.lock"

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / self.filename
        self._fd: int | None = None

    def acquire(self, wait: bool = False) -> None:
        ensure_state_dir(self.path.parent)
        fd = open_private(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"another {self.what} (pid {holder}) is running on {self.path.parent}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def try_acquire(self) -> bool:
        try:
            self.acquire()
        except AlreadyRunning:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class UploadLock(StateLock):
    what = "uploader"
    filename = "upload.lock"


class CounterLock(StateLock):
    what = "payment taker (UI or guichet pay)"
    filename = "counter.lock"

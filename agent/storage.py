"""The state directory's storage: one place that creates it private and turns storage failures into one line.

    state = ensure_state_dir(config.state.dir)          # created 0700 (tightened if it was looser)
    with storage_errors(state / "bills.db", "bill lookup"):
        conn.execute("SELECT ...")                      # sqlite3 / OSError -> StorageError, one line
    check_free_space(state)                              # StorageError when the disk is nearly full
    conn = open_database(state / "bills.db", MIGRATIONS)   # WAL, synchronous=FULL, 0600, migrated

Every writer of the state directory (journal, bill cache, cashiers, locks, logs, the UI) calls
`ensure_state_dir` first, so whichever runs first on a fresh machine leaves it 0700; every SQLite file in
it (journal, bill cache, cashiers) is opened by `open_database`, so all have the same durability and mode.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agent import clock
from agent.errors import JournalError, StorageError

# Below this much free space on the state directory's filesystem no payment starts: a payment writes a few
# KiB (journal pages, WAL frames, checkpoint), and SQLite needs room to checkpoint what it has.
MIN_FREE_BYTES = 8 * 1024 * 1024
# How long an opener waits for another process's migration of the same file (migration 5 rewrote 200,000
# payments in 9 s on a slow disk) before it gives up with one line.
MIGRATION_WAIT = 600.0


def ensure_state_dir(path: str | os.PathLike[str]) -> Path:
    """Create the state directory 0700 (parents too) if missing; an existing one we own is tightened to 0700.

    Raises StorageError (one line) if it cannot be created or is not a directory.
    """
    p = Path(path)
    try:
        if not p.is_dir():
            # mkdir's mode passes through the umask; chmod after so a permissive umask cannot widen it.
            p.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(p, 0o700)
        st = p.stat()
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.geteuid():
            os.chmod(p, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError as e:
        raise StorageError(f"{p}: cannot create the state directory: {describe_os_error(e)}") from None
    return p


def describe_os_error(e: OSError) -> str:
    """The cause of an OSError in a few words (disk full, read-only, I/O error...)."""
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno == errno.EDQUOT:
        return "the disk quota is exceeded"
    if e.errno == errno.EROFS:
        return "the filesystem is read-only"
    if e.errno == errno.EIO:
        return "input/output error (failing disk?)"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return e.strerror or str(e)


def describe_sqlite_error(e: sqlite3.Error) -> str:
    """The cause of an sqlite3 error in a few words, with the way out; SQLite's own text kept in parentheses.

    The one wording of every state file's SQLite failure (journal, bill cache, cashiers).
    """
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    low = msg.lower()
    if "full" in low:  # "database or disk is full"
        return f"the disk is full ({msg})"
    if "disk i/o" in low:
        return f"input/output error, failing or full disk ({msg})"
    if "readonly" in low or "read-only" in low:
        return f"the file or its directory is read-only ({msg})"
    if "malformed" in low or "not a database" in low:
        return f"the file is corrupt ({msg}); it was left untouched: restore it from backup or move it aside"
    if "locked" in low or "busy" in low:
        return f"the file is busy in another process ({msg})"
    if "unable to open" in low:
        return f"cannot open the file ({msg}); check the directory exists and is writable"
    return msg


@contextmanager
def storage_errors(path: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Inside: any sqlite3.Error or OSError becomes StorageError("{path}: {what}: {cause}"), one line.

    Our own GuichetErrors pass through untouched. Use it around every read and write of a state file.
    """
    try:
        yield
    except sqlite3.Error as e:
        raise StorageError(_line(path, what, describe_sqlite_error(e))) from None
    except OSError as e:
        raise StorageError(_line(path, what, describe_os_error(e))) from None


def _line(path: str | os.PathLike[str], what: str, cause: str) -> str:
    return f"{path}: {what}: {cause}" if what else f"{path}: {cause}"


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDWR) -> int:
    """Open `path` (created 0600 if missing) and return its descriptor; a file of ours that is looser is
    tightened to 0600 first, so a state file is never readable by others, not even briefly.

        fd = open_private(state / "journal.hwm")          # O_RDWR | O_CREAT | O_CLOEXEC, mode 0600
    Raises OSError; the caller says what the file is for.
    """
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != 0o600 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def create_private(path: str | os.PathLike[str]) -> None:
    """Create `path` 0600 (or tighten it) before a library such as SQLite opens it with its own mode; its
    existing `-wal` and `-shm` companions are tightened too. Opens nothing that exists (a read-only
    filesystem still lets SQLite read it)."""
    if not os.path.exists(path):
        os.close(open_private(path, os.O_WRONLY))
    for side in (os.fspath(path), f"{os.fspath(path)}-wal", f"{os.fspath(path)}-shm"):
        try:
            st = os.stat(side)
        except FileNotFoundError:
            continue
        if stat.S_IMODE(st.st_mode) != 0o600 and st.st_uid == os.geteuid():
            os.chmod(side, 0o600)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged process may still write on `path`'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_free_space(path: str | os.PathLike[str], minimum: int = MIN_FREE_BYTES) -> None:
    """Raise StorageError when `path`'s filesystem has less than `minimum` bytes free: call it before asking
    anyone for money, so an approved payment always has room to be written."""
    try:
        free = free_bytes(path)
    except OSError as e:
        raise StorageError(f"{path}: cannot check free space: {describe_os_error(e)}") from None
    if free < minimum:
        raise StorageError(
            f"{path}: only {free // 1024} KiB free on the disk, {minimum // 1024} KiB needed to take a payment;"
            " free some space (old logs, receipts) and try again"
        )


def open_database(
    path: str | os.PathLike[str],
    migrations: Sequence[tuple[int, str]],
    *,
    error: type[Exception] = JournalError,
    timeout: float = 10.0,
    busy_locks: Sequence[str] = (),
) -> sqlite3.Connection:
    """Open (creating) a state file's SQLite database with the house settings and apply pending migrations.

    The house settings: 0600 (with its -wal and -shm), WAL, synchronous=FULL (a transaction that returned
    is on disk), foreign keys on, `timeout` seconds of waiting on a busy file, autocommit (callers BEGIN).
    `migrations` are (user_version, SQL script), append only: a released one is never edited.
    Raises `error` with a one-line reason for a corrupt, unreadable, read-only or newer file.

    Migrating holds `<file>.lock` (flock): another process opening the file meanwhile waits for it there
    (up to MIGRATION_WAIT) instead of failing on SQLite's busy timeout. An existing file is not migrated
    while another process holds one of `busy_locks` (lock files beside it: a running agent of the previous
    version would keep writing the old way), nor without free space for a copy of it (the WAL).

        conn = open_database(state / "journal.db", MIGRATIONS)                       # JournalError
        conn = open_database(state / "cashiers.db", SCHEMA, error=StorageError, timeout=5)
    """
    path = Path(path)
    try:
        ensure_state_dir(path.parent)
        create_private(path)  # before SQLite creates it with the umask's mode
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise error(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Migrations rewrite stored times with agent.clock's own rule, not SQLite's (which keeps milliseconds).
        conn.create_function("utc_stamp", 1, clock.migrate_text, deterministic=True)
        if _version(conn) < (migrations[-1][0] if migrations else 0):
            try:
                with _migration_lock(path, error):
                    _migrate(conn, path, migrations, error, busy_locks)
            except BaseException:
                conn.close()
                raise
        else:
            _migrate(conn, path, migrations, error, busy_locks)  # a newer file is refused there
        create_private(path)  # and its -wal and -shm, now that they exist
        return conn
    except sqlite3.DatabaseError as e:
        raise error(f"{path}: {describe_sqlite_error(e)}") from None
    except PermissionError as e:
        raise error(f"{path}: permission denied ({e.strerror})") from None
    except OSError as e:
        raise error(f"{path}: {describe_os_error(e)}") from None


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


@contextmanager
def _migration_lock(path: Path, error: type[Exception], wait: float | None = None) -> Iterator[None]:
    """Hold `<file>.lock` exclusively (flock, released by the kernel if we die): one migrating process at a
    time, the others wait here. `error` (one line) after `wait` seconds (MIGRATION_WAIT)."""
    lock = path.with_name(path.name + ".lock")
    fd = open_private(lock)
    try:
        deadline = time.monotonic() + (MIGRATION_WAIT if wait is None else wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(f"{path}: another process is still upgrading this file ({lock}); try again") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the flock


def _held_by_other(lock: Path) -> int | None:
    """The pid of another process holding the flock on `lock`, or None (free, missing, or ours). Tested with
    a shared lock, dropped at once."""
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            pid = int(text) if text.isdigit() else -1
            return None if pid == os.getpid() else pid  # ours through another descriptor: not another process
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _migrate(
    conn: sqlite3.Connection,
    path: Path,
    migrations: Sequence[tuple[int, str]],
    error: type[Exception],
    busy_locks: Sequence[str] = (),
) -> None:
    current = _version(conn)  # again under the migration lock: another process may have done it meanwhile
    latest = migrations[-1][0] if migrations else 0
    if current > latest:
        raise error(f"{path}: schema version {current} is newer than this guichet knows ({latest}); upgrade guichet")
    if current == latest:
        return
    if current > 0:  # a file in use by an older version, not a new one
        for name in busy_locks:
            pid = _held_by_other(path.with_name(name))
            if pid is not None:
                raise error(
                    f"{path}: cannot upgrade it (version {current} to {latest}) while another process"
                    f" (pid {pid if pid > 0 else '?'}) holds {name}: stop the running guichet first"
                )
        size = sum(os.path.getsize(f) for f in (path, Path(f"{path}-wal")) if os.path.exists(f))
        if free_bytes(path.parent) < size + MIN_FREE_BYTES:
            raise error(
                f"{path}: cannot upgrade it: {free_bytes(path.parent) // 1024} KiB free on the disk, the upgrade"
                f" needs {(size + MIN_FREE_BYTES) // 1024} KiB (a copy of the file); free some space and try again"
            )
    for version, sql in migrations:
        if version <= current:
            continue
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {int(version)};\nCOMMIT;")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

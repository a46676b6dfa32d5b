"""The cashier file (`cashiers.db` in the state dir): its schema, its connection and its audit trail.

    store = CashierStore.open(state_dir)      # agent.cashiers: accounts and shifts on one CashierFile
    store.events("c0042", last=10)            # who did what, when, oldest first

Separate from the payment journal so its schema evolves on its own; opened by agent.storage.open_database
like every state file (WAL, synchronous=FULL, 0600: PIN hashes are secrets, even when memory-hard). Times
are stored in agent.clock's one form (UTC, `clock.stamp`); migration 2 rewrote the seconds-only
`+00:00` form of version 1.
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent import clock
from agent.storage import open_database

FILE_NAME = "cashiers.db"

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS cashiers (
        cashier_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('cashier', 'supervisor')),
        pin_hash TEXT NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0,
        locked_until TEXT,
        active INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS shifts (
        shift_id INTEGER PRIMARY KEY AUTOINCREMENT,
        cashier_id TEXT NOT NULL REFERENCES cashiers(cashier_id),
        opened_at TEXT NOT NULL,
        closed_at TEXT,
        closed_by TEXT,
        z_report TEXT
    )""",
    # At most one open shift per cashier.
    "CREATE UNIQUE INDEX IF NOT EXISTS shifts_open ON shifts(cashier_id) WHERE closed_at IS NULL",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        cashier_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        detail TEXT
    )""",
]
# Version 1 is the whole schema; IF NOT EXISTS keeps it harmless on a file created before the shared opener.
MIGRATIONS = [
    (1, ";\n".join(_SCHEMA) + ";"),
    # Times in the one stored form (agent.clock.stamp): utc_stamp() is agent.clock.migrate_text, registered on
    # the connection by agent.storage. One transaction, like every migration.
    (
        2,
        """
        UPDATE cashiers SET created_at = utc_stamp(created_at), locked_until = utc_stamp(locked_until);
        UPDATE shifts SET opened_at = utc_stamp(opened_at), closed_at = utc_stamp(closed_at);
        UPDATE events SET at = utc_stamp(at);
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


class CashierError(Exception):
    """A cashier operation refused; the message is one clear line."""


class CashierFile:
    """The connection to the cashier file. Thread-safe: one connection guarded by a lock (logins are rare).

    A CashierError (one line naming the file) when it cannot be opened: corrupt, read-only, or newer.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_database(self.path, MIGRATIONS, error=CashierError, timeout=5.0)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _require(self, cashier_id: str) -> None:
        """KeyError unless the account exists (active or not)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM cashiers WHERE cashier_id = ?", (cashier_id,)).fetchone()
        if row is None:
            raise KeyError(cashier_id)

    def events(
        self, cashier_id: str | None = None, *, last: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The audit trail, oldest first: at, cashier_id, kind (created, login, login_failed, locked,
        unlocked, pin_changed, disabled, enabled, shift_opened, shift_closed), actor (who did it), detail.
        `last=N`: only the N most recent."""
        sql = "SELECT id, at, cashier_id, kind, actor, detail FROM events"
        args: builtins.list[Any] = []
        if cashier_id:
            sql += " WHERE cashier_id = ?"
            args.append(cashier_id)
        sql += " ORDER BY id DESC"
        if last is not None:
            sql += " LIMIT ?"
            args.append(int(last))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{k: r[k] for k in ("at", "cashier_id", "kind", "actor", "detail")} for r in reversed(rows)]

    @staticmethod
    def _event(db: sqlite3.Connection, cashier_id: str, kind: str, actor: str | None, detail: str | None) -> None:
        db.execute(
            "INSERT INTO events (at, cashier_id, kind, actor, detail) VALUES (?,?,?,?,?)",
            (clock.now_stamp(), cashier_id, kind, actor, detail),
        )

"""Every run of the day's close, kept: `dayclose.db` in the state dir (agent.storage.open_database).

    store = DayCloseStore.open(state_dir)
    run_id = store.save(report)                 # one transaction; a close run again later is a new run
    store.runs(day="2026-11-30")                # newest first: run_id, day, run_at, online, problems, clean
    store.get(run_id)                           # the report as it was, a dict (DayClose.to_dict())

Its own file so that its schema evolves on its own, and a close never contends with a payment's write.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from agent import clock
from agent.dayclose.reconcile import DayClose
from agent.errors import StorageError
from agent.storage import open_database, storage_errors

FILE_NAME = "dayclose.db"
MIGRATIONS = [
    (
        1,
        """CREATE TABLE runs (
            run_id INTEGER PRIMARY KEY AUTOINCREMENT,
            terminal_id TEXT NOT NULL,
            day TEXT NOT NULL,
            run_at TEXT NOT NULL,
            run_by TEXT,
            online INTEGER NOT NULL,
            problems INTEGER NOT NULL,
            clean INTEGER NOT NULL,
            report TEXT NOT NULL
        );
        CREATE INDEX runs_day ON runs (day, run_id);""",
    )
]
MAX_LISTED = 1000


class DayCloseStore:
    """The kept runs. Thread-safe: one connection behind a lock (a close is rare)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_database(self.path, MIGRATIONS, error=StorageError, timeout=5.0)

    @classmethod
    def open(cls, state_dir: str | Path) -> DayCloseStore:
        return cls(Path(state_dir) / FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DayCloseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, report: DayClose, run_by: str | None = None) -> int:
        data = report.to_dict()
        with self._lock, storage_errors(self.path, "keep the day's close"):
            cur = self._db.execute(
                "INSERT INTO runs (terminal_id, day, run_at, run_by, online, problems, clean, report)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (report.terminal_id, report.day, report.run_at or clock.utc_text(clock.utc_now()), run_by,
                 int(report.online), report.problems, int(report.clean), json.dumps(data, ensure_ascii=False)),
            )
            return int(cur.lastrowid or 0)

    def runs(self, day: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        sql = "SELECT run_id, terminal_id, day, run_at, run_by, online, problems, clean FROM runs"
        args: list[Any] = []
        if day:
            sql += " WHERE day = ?"
            args.append(day)
        sql += " ORDER BY run_id DESC LIMIT ?"
        args.append(max(1, min(int(limit), MAX_LISTED)))
        with self._lock, storage_errors(self.path, "list the day's closes"):
            rows = self._db.execute(sql, args).fetchall()
        return [{**dict(r), "online": bool(r["online"]), "clean": bool(r["clean"])} for r in rows]

    def get(self, run_id: int) -> dict[str, Any]:
        with self._lock, storage_errors(self.path, "read a day's close"):
            row = self._db.execute("SELECT run_id, report FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        data: dict[str, Any] = json.loads(row["report"])
        data["run_id"] = row["run_id"]
        return data

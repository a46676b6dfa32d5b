"""The payment journal: every payment and every state change, crash-safe, in one SQLite file.

>>> journal = Journal.open("/var/lib/guichet", terminal_id="ORAN-07-G2", agency_id="ORAN-07")
>>> [p] = journal.create([NewPayment(bill, 345600)], currency="DZD", method="cash", cashier_id="c0042",
...                      captured_offline=False)
>>> journal.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
>>> journal.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={...})

WAL mode with synchronous=FULL: a transaction that returned is on disk. Each state change is one
transaction, together with its audit row and, for an approval, its outbox row; a crash between any two
steps leaves the journal in the state before or after that step, never between.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.crashpoints import crashpoint
from agent.errors import InvalidTransition, JournalError
from agent.states import ALLOWED, State

DB_NAME = "journal.db"

# Versioned migrations: append only, never edit a released one.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE payments (
            payment_id TEXT PRIMARY KEY,
            transaction_id TEXT NOT NULL,
            bill_reference TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            currency TEXT NOT NULL,
            method TEXT NOT NULL,
            state TEXT NOT NULL,
            card TEXT,
            authorization TEXT,
            agency_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            cashier_id TEXT NOT NULL,
            receipt_number TEXT NOT NULL UNIQUE,
            captured_at TEXT NOT NULL,
            captured_offline INTEGER NOT NULL,
            bill TEXT,
            notice TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            uploaded_at TEXT
        );
        CREATE INDEX payments_state ON payments(state, captured_at);
        CREATE INDEX payments_bill ON payments(bill_reference);
        CREATE INDEX payments_transaction ON payments(transaction_id);
        CREATE TABLE outbox (
            payment_id TEXT PRIMARY KEY REFERENCES payments(payment_id),
            enqueued_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        ) WITHOUT ROWID;
        -- A payment enters each state at most once (the transitions form no cycle), so (payment, state)
        -- identifies an audit row: one B-tree, no extra index, for the write on every transition.
        CREATE TABLE audit (
            payment_id TEXT NOT NULL,
            to_state TEXT NOT NULL,
            at TEXT NOT NULL,
            from_state TEXT,
            actor TEXT NOT NULL,
            detail TEXT,
            PRIMARY KEY (payment_id, to_state)
        ) WITHOUT ROWID;
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters (name, value) VALUES ('receipt', 0);
        """,
    ),
    (
        2,
        # The audit trail and the outbox follow every state change inside SQLite itself: no code path can
        # change a payment's state without its audit row, or approve it without queueing its upload.
        """
        ALTER TABLE payments ADD COLUMN last_actor TEXT;
        ALTER TABLE payments ADD COLUMN last_detail TEXT;
        CREATE TRIGGER payments_created AFTER INSERT ON payments BEGIN
            INSERT INTO audit (payment_id, at, from_state, to_state, actor, detail)
            VALUES (new.payment_id, new.created_at, NULL, new.state, new.last_actor, new.last_detail);
        END;
        CREATE TRIGGER payments_state AFTER UPDATE OF state ON payments BEGIN
            INSERT INTO audit (payment_id, at, from_state, to_state, actor, detail)
            VALUES (new.payment_id, new.updated_at, old.state, new.state, new.last_actor, new.last_detail);
        END;
        CREATE TRIGGER payments_enqueue AFTER UPDATE OF state ON payments WHEN new.state = 'approved' BEGIN
            INSERT INTO outbox (payment_id, enqueued_at) VALUES (new.payment_id, new.updated_at);
        END;
        CREATE TRIGGER payments_dequeue AFTER UPDATE OF state ON payments WHEN old.state = 'approved' BEGIN
            DELETE FROM outbox WHERE payment_id = new.payment_id;
        END;
        """,
    ),
]

_PAYMENT_COLUMNS = (
    "payment_id, transaction_id, bill_reference, amount, currency, method, state, card, authorization, agency_id,"
    " terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill, notice, error, created_at,"
    " updated_at, uploaded_at"
)


def _sources(to: State) -> str:
    return ", ".join(f"'{s.value}'" for s, targets in ALLOWED.items() if to in targets)


# One statement per target state: the WHERE clause only matches payments allowed to make that move.
_TRANSITION_SQL = {
    to: (
        "UPDATE payments SET state = :to, updated_at = :now, card = COALESCE(:card, card),"
        " authorization = COALESCE(:authorization, authorization), notice = COALESCE(:notice, notice),"
        " error = COALESCE(:error, error),"
        " uploaded_at = CASE WHEN :to = 'uploaded' THEN :now ELSE uploaded_at END,"
        f" last_actor = :actor, last_detail = :detail WHERE payment_id = :id AND state IN ({_sources(to)})"
        f" RETURNING {_PAYMENT_COLUMNS}"
    )
    for to in State
    if _sources(to)
}


def now_rfc3339() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def now_precise() -> str:
    return datetime.now().astimezone().isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Payment:
    """One bill's payment as the journal holds it. Never holds a full PAN."""

    payment_id: str
    transaction_id: str
    bill_reference: str
    amount: int
    currency: str
    method: str
    state: str
    card: dict[str, Any] | None
    authorization: dict[str, Any] | None
    agency_id: str
    terminal_id: str
    cashier_id: str
    receipt_number: str
    captured_at: str
    captured_offline: bool
    bill: dict[str, Any] | None = None
    notice: str | None = None
    error: str | None = None
    created_at: str = ""
    updated_at: str = ""
    uploaded_at: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Payment:
        data = {k: row[k] for k in _FIELDS}
        for key in ("card", "authorization", "bill"):
            data[key] = json.loads(data[key]) if data[key] else None
        data["captured_offline"] = bool(data["captured_offline"])
        return cls(**data)

    def summary(self) -> dict[str, Any]:
        """The `guichet pay --json` fields (DESIGN.md)."""
        return {
            "payment_id": self.payment_id,
            "state": self.state,
            "bill_reference": self.bill_reference,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method,
            "receipt_number": self.receipt_number,
            "captured_offline": self.captured_offline,
        }

    def to_api(self) -> dict[str, Any]:
        """The contract's Payment, as uploaded. Its content never changes once approved (idempotency)."""
        card = None
        if self.card is not None:
            card = {k: self.card.get(k) for k in ("scheme", "pan_masked", "pan_token", "expiry", "aid")}
        auth = None
        if self.authorization is not None and self.method != "cash":  # the contract: null for cash
            auth = {k: self.authorization.get(k) for k in ("code", "reference", "approved_at")}
        return {
            "payment_id": self.payment_id,
            "transaction_id": self.transaction_id,
            "bill_reference": self.bill_reference,
            "amount": self.amount,
            "currency": self.currency,
            "method": self.method,
            "card": card,
            "authorization": auth,
            "agency_id": self.agency_id,
            "terminal_id": self.terminal_id,
            "cashier_id": self.cashier_id,
            "receipt_number": self.receipt_number,
            "captured_at": self.captured_at,
            "captured_offline": self.captured_offline,
        }


_FIELDS = tuple(f.name for f in dataclasses.fields(Payment))


@dataclass(frozen=True)
class NewPayment:
    """What the flow asks the journal to create: a bill (its contract fields) and the amount paid on it."""

    bill: dict[str, Any]
    amount: int


@dataclass
class QueueStats:
    count: int = 0
    total: dict[str, int] = field(default_factory=dict)
    oldest_captured_at: datetime | None = None
    needs_attention: int = 0
    unknown: int = 0
    # authorizing or unknown: the card may have been charged; offline limits count them too
    in_doubt_count: int = 0
    in_doubt_total: dict[str, int] = field(default_factory=dict)

    def oldest_age(self, now: datetime | None = None) -> float | None:
        if self.oldest_captured_at is None:
            return None
        return ((now or datetime.now().astimezone()) - self.oldest_captured_at).total_seconds()


def _secure_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so it is never world-readable, even briefly."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists() and stat.S_IMODE(p.stat().st_mode) != 0o600:
            os.chmod(p, 0o600)


def open_database(path: Path, migrations: Sequence[tuple[int, str]]) -> sqlite3.Connection:
    """Open (creating) an SQLite file with the house settings and apply pending migrations.

    Raises JournalError with a one-line reason for a corrupt, unreadable or read-only file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _secure_file(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn, path, migrations)
        _secure_file(path)
        return conn
    except sqlite3.DatabaseError as e:
        raise JournalError(f"{path}: {_explain(e)}") from None
    except PermissionError as e:
        raise JournalError(f"{path}: permission denied ({e.strerror})") from None
    except OSError as e:
        raise JournalError(f"{path}: {e.strerror or e}") from None


def _explain(e: sqlite3.DatabaseError) -> str:
    msg = str(e)
    if "not a database" in msg or "malformed" in msg:
        return f"the file is corrupt ({msg}); it was left untouched: restore it from backup or move it aside"
    if "readonly" in msg or "read-only" in msg:
        return f"the file or its directory is read-only ({msg})"
    if "unable to open" in msg:
        return f"cannot open the database ({msg}); check the directory exists and is writable"
    return msg


def _migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[tuple[int, str]]) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    latest = migrations[-1][0] if migrations else 0
    if current > latest:
        raise JournalError(
            f"{path}: schema version {current} is newer than this guichet knows ({latest}); upgrade guichet"
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


class Journal:
    """The payments journal of one terminal. Thread-safe: one connection, one lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, terminal_id: str, agency_id: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self.terminal_id = terminal_id
        self.agency_id = agency_id

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str], *, terminal_id: str, agency_id: str) -> Journal:
        path = Path(state_dir) / DB_NAME
        return cls(open_database(path, MIGRATIONS), path, terminal_id, agency_id)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, name: str = "") -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE so concurrent writers queue instead of failing late."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path}: cannot write: {_explain(e)}") from None
            try:
                yield self._conn
                crashpoint(f"{name}.before_commit")
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                self._conn.execute("ROLLBACK")
                raise JournalError(f"{self.path}: write failed: {_explain(e)}") from None
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            crashpoint(f"{name}.after_commit")

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> builtins.list[Payment]:
        with self._lock:
            try:
                rows = self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path}: read failed: {_explain(e)}") from None
        return [Payment.from_row(dict(r)) for r in rows]

    # -- creating and moving payments ------------------------------------------------------------

    def create(
        self,
        items: Sequence[NewPayment],
        *,
        currency: str,
        method: str,
        cashier_id: str,
        captured_offline: bool,
        actor: str | None = None,
    ) -> builtins.list[Payment]:
        """Record new payments as `created`, one per bill, sharing a transaction_id; one transaction.

        Receipt numbers come from a counter committed in the same transaction, so they never repeat.
        """
        if not items:
            raise ValueError("no bill to pay")
        ids = [str(uuid.uuid4()) for _ in items]
        transaction_id = ids[0]
        now = now_precise()
        captured_at = now_rfc3339()
        created: builtins.list[Payment] = []
        with self._tx("journal.create") as c:
            for pid, item in zip(ids, items, strict=True):
                seq = c.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'receipt' RETURNING value"
                ).fetchone()[0]
                row = c.execute(
                    "INSERT INTO payments (payment_id, transaction_id, bill_reference, amount, currency, method,"
                    " state, agency_id, terminal_id, cashier_id, receipt_number, captured_at, captured_offline,"
                    " bill, created_at, updated_at, last_actor) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                    f" RETURNING {_PAYMENT_COLUMNS}",
                    (
                        pid,
                        transaction_id,
                        item.bill["reference"],
                        item.amount,
                        currency,
                        method,
                        State.CREATED.value,
                        self.agency_id,
                        self.terminal_id,
                        cashier_id,
                        f"{self.terminal_id}-{seq:06d}",
                        captured_at,
                        int(captured_offline),
                        json.dumps(item.bill, ensure_ascii=False),
                        now,
                        now,
                        actor or cashier_id,
                    ),
                ).fetchone()
                created.append(Payment.from_row(row))
        return created

    def transition(
        self,
        payment_ids: str | Sequence[str],
        to: State,
        *,
        actor: str,
        card: dict[str, Any] | None = None,
        authorization: dict[str, Any] | None = None,
        notice: str | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> builtins.list[Payment]:
        """Move payments to `to` in one transaction, with their audit rows and (on approval) outbox rows.

        Raises InvalidTransition, leaving everything as it was, if any payment may not make that move.
        """
        ids = [payment_ids] if isinstance(payment_ids, str) else list(payment_ids)
        to = State(to)
        sql = _TRANSITION_SQL.get(to)
        params = {
            "to": to.value,
            "now": now_precise(),
            "card": json.dumps(card, ensure_ascii=False) if card is not None else None,
            "authorization": json.dumps(authorization, ensure_ascii=False) if authorization is not None else None,
            "notice": notice,
            "error": error,
            "actor": actor,
            "detail": json.dumps(detail, ensure_ascii=False) if detail else None,
        }
        done: builtins.list[Payment] = []
        with self._tx(f"journal.{to.value}") as c:
            for pid in ids:
                row = c.execute(sql, {**params, "id": pid}).fetchone() if sql else None
                if row is None:
                    current = c.execute("SELECT state FROM payments WHERE payment_id = ?", (pid,)).fetchone()
                    if current is None:
                        raise InvalidTransition(f"payment {pid}: not in the journal")
                    raise InvalidTransition(f"payment {pid}: cannot go from {current[0]} to {to}")
                done.append(Payment.from_row(row))
        return done

    def recover(self, actor: str = "recovery") -> builtins.list[Payment]:
        """After a crash: `authorizing` becomes `unknown` (the card may have been charged: never guess),
        `created` becomes `cancelled` (nothing was asked for money yet). Returns what it changed."""
        changed: builtins.list[Payment] = []
        for p in self._rows("SELECT * FROM payments WHERE state IN (?, ?)", (State.AUTHORIZING, State.CREATED)):
            to = State.UNKNOWN if p.state == State.AUTHORIZING else State.CANCELLED
            changed += self.transition(
                p.payment_id, to, actor=actor, detail={"reason": "agent restarted during this step"}
            )
        return changed

    def record_upload_results(self, results: Sequence[dict[str, Any]], actor: str = "sync") -> dict[str, int]:
        """Apply one batch's results in one transaction: accepted/duplicate -> uploaded, rejected -> rejected."""
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "skipped": 0}
        now = now_precise()
        uploaded, rejected = [], []
        for r in results:
            status = r.get("status")
            detail = json.dumps({"upload": status})
            if status in ("accepted", "duplicate"):
                uploaded.append((status, (now, r.get("notice"), actor, detail, r["payment_id"])))
            elif status == "rejected":
                e = r.get("error") or {}
                err = f"{e.get('code', 'rejected')}: {e.get('message', '')}".strip()
                rejected.append((now, err, actor, detail, r["payment_id"]))
            else:
                counts["skipped"] += 1
        # Only payments still `approved` move: a replayed answer changes nothing.
        with self._tx("sync.record") as c:
            for status, row in uploaded:
                n = c.execute(
                    "UPDATE payments SET state = 'uploaded', updated_at = ?1, uploaded_at = ?1,"
                    " notice = COALESCE(?2, notice), last_actor = ?3, last_detail = ?4"
                    " WHERE payment_id = ?5 AND state = 'approved'",
                    row,
                ).rowcount
                counts[status if n else "skipped"] += 1
            for row in rejected:
                n = c.execute(
                    "UPDATE payments SET state = 'rejected', updated_at = ?1, error = ?2, last_actor = ?3,"
                    " last_detail = ?4 WHERE payment_id = ?5 AND state = 'approved'",
                    row,
                ).rowcount
                counts["rejected" if n else "skipped"] += 1
        return counts

    def note_upload_failure(self, payment_ids: Sequence[str], error: str) -> None:
        with self._tx() as c:
            c.executemany(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE payment_id = ?",
                [(error[:500], pid) for pid in payment_ids],
            )

    def upload_failures(self, payment_id: str) -> int:
        with self._lock:
            row = self._conn.execute("SELECT attempts FROM outbox WHERE payment_id = ?", (payment_id,)).fetchone()
        return int(row[0]) if row else 0

    # -- reading ---------------------------------------------------------------------------------

    def get(self, payment_id: str) -> Payment:
        rows = self._rows("SELECT * FROM payments WHERE payment_id = ?", (payment_id,))
        if not rows:
            raise KeyError(payment_id)
        return rows[0]

    def find(self, key: str) -> Payment:
        """A payment by id, id prefix (8+ chars) or receipt number; KeyError if none or ambiguous."""
        rows = self._rows(
            "SELECT * FROM payments WHERE payment_id = ? OR receipt_number = ? OR"
            " (length(?) >= 8 AND payment_id LIKE ? || '%') LIMIT 2",
            (key, key, key, key),
        )
        if len(rows) != 1:
            raise KeyError(key)
        return rows[0]

    def list(
        self,
        states: Sequence[str] | None = None,
        limit: int | None = None,
        since: str | None = None,
        bill_reference: str | None = None,
    ) -> builtins.list[Payment]:
        """Payments, newest first."""
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params += [str(s) for s in states]
        if since:
            where.append("created_at >= ?")
            params.append(since)
        if bill_reference:
            where.append("bill_reference = ?")
            params.append(bill_reference)
        sql = "SELECT * FROM payments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, receipt_number DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql, params)

    def transaction(self, transaction_id: str) -> builtins.list[Payment]:
        return self._rows("SELECT * FROM payments WHERE transaction_id = ? ORDER BY receipt_number", (transaction_id,))

    def unknown(self) -> builtins.list[Payment]:
        return self._rows("SELECT * FROM payments WHERE state = ? ORDER BY created_at", (State.UNKNOWN,))

    def blocking_payment(self, bill_reference: str) -> Payment | None:
        rows = self._rows(
            "SELECT * FROM payments WHERE bill_reference = ? AND state IN ('authorizing', 'unknown')"
            " ORDER BY created_at LIMIT 1",
            (bill_reference,),
        )
        return rows[0] if rows else None

    def outbox_batch(self, limit: int) -> builtins.list[Payment]:
        """The oldest approved payments waiting for upload."""
        return self._rows(
            "SELECT p.* FROM outbox o JOIN payments p USING (payment_id) ORDER BY o.enqueued_at, o.payment_id LIMIT ?",
            (limit,),
        )

    def pending_against(self, bill_reference: str, fetched_at: str | None) -> int:
        """Minor units paid here on a bill that a bill snapshot taken at `fetched_at` does not show yet:
        unsent or in-doubt payments, and those uploaded after the snapshot was taken."""
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM payments WHERE bill_reference = ? AND"
                " (state IN ('approved', 'unknown', 'authorizing')"
                "  OR (state = 'uploaded' AND ? IS NOT NULL AND uploaded_at > ?))",
                (bill_reference, fetched_at, fetched_at),
            ).fetchone()
        return int(row[0])

    def queue_stats(self) -> QueueStats:
        stats = QueueStats()
        with self._lock:
            for cur, n, total, oldest in self._conn.execute(
                "SELECT currency, COUNT(*), SUM(amount), MIN(captured_at) FROM payments"
                " WHERE state = 'approved' GROUP BY currency"
            ):
                stats.count += n
                stats.total[cur] = total
                when = datetime.fromisoformat(oldest)
                if stats.oldest_captured_at is None or when < stats.oldest_captured_at:
                    stats.oldest_captured_at = when
            stats.unknown = self._conn.execute("SELECT COUNT(*) FROM payments WHERE state = 'unknown'").fetchone()[0]
            for cur, n, total in self._conn.execute(
                "SELECT currency, COUNT(*), SUM(amount) FROM payments WHERE state IN ('authorizing', 'unknown')"
                " GROUP BY currency"
            ):
                stats.in_doubt_count += n
                stats.in_doubt_total[cur] = total
            stats.needs_attention = self._conn.execute(
                "SELECT COUNT(*) FROM payments WHERE state IN ('rejected', 'unknown') OR notice IS NOT NULL"
            ).fetchone()[0]
        return stats

    def audit(self, payment_id: str) -> builtins.list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT at, from_state, to_state, actor, detail FROM audit WHERE payment_id = ? ORDER BY at",
                (payment_id,),
            ).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

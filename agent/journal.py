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
import logging
import os
import sqlite3
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import orjson
import sqlite_utils

from agent.crashpoints import ARMED, crashpoint
from agent.errors import GuichetError, InvalidTransition, JournalDamaged, JournalError, StorageError
from agent.states import ALLOWED, State
from agent.storage import (
    create_private,
    describe_os_error,
    describe_sqlite_error,
    ensure_state_dir,
    open_private,
    storage_errors,
)

DB_NAME = "journal.db"

log = logging.getLogger("guichet.journal")

# Versioned migrations: append only, never edit a released one.
#
# The journal is append-only. `payment` holds what a payment is, fixed when it is created; `event` holds
# every state change, never rewritten: it is both the payment's history and its audit trail, and a
# payment's latest event is its state. `open` lists the payments not settled for good (in flight, in doubt,
# waiting for upload, rejected) with their upload attempts; a payment joins it when created and leaves it
# when uploaded, declined or cancelled. A capture (authorizing -> approved) writes its event row only: one
# B-tree page, as a bare one-row insert writes (migration 3).
# The views `payments`, `unsettled`, `outbox` and `audit` give the current picture for readers (doctor, tools).
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE payment (
            payment_id TEXT PRIMARY KEY,
            transaction_id TEXT NOT NULL,
            bill_reference TEXT NOT NULL,
            amount INTEGER NOT NULL CHECK (amount > 0),
            currency TEXT NOT NULL,
            method TEXT NOT NULL,
            agency_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            cashier_id TEXT NOT NULL,
            receipt_number TEXT NOT NULL UNIQUE,
            captured_at TEXT NOT NULL,
            captured_offline INTEGER NOT NULL,
            bill TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX payment_bill ON payment(bill_reference);
        CREATE INDEX payment_transaction ON payment(transaction_id);
        CREATE INDEX payment_created ON payment(created_at);
        CREATE TABLE event (
            event_id INTEGER PRIMARY KEY,  -- a rowid table: appends fill its last page, no page splits
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            step INTEGER NOT NULL,
            state TEXT NOT NULL,
            from_state TEXT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            card TEXT,
            authorization TEXT,
            notice TEXT,
            error TEXT,
            detail TEXT
        );
        CREATE UNIQUE INDEX event_payment ON event(payment_id, step);
        CREATE INDEX event_notice ON event(payment_id) WHERE notice IS NOT NULL;
        CREATE TABLE open (
            payment_id TEXT PRIMARY KEY REFERENCES payment(payment_id),
            state TEXT NOT NULL,
            since TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        ) WITHOUT ROWID;
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters (name, value) VALUES ('receipt', 0);
        CREATE VIEW payments AS
        SELECT p.payment_id, p.transaction_id, p.bill_reference, p.amount, p.currency, p.method,
               e.state,
               (SELECT x.card FROM event x WHERE x.payment_id = p.payment_id AND x.card IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS card,
               (SELECT x.authorization FROM event x WHERE x.payment_id = p.payment_id
                AND x.authorization IS NOT NULL ORDER BY x.step DESC LIMIT 1) AS authorization,
               p.agency_id, p.terminal_id, p.cashier_id, p.receipt_number, p.captured_at, p.captured_offline,
               p.bill,
               (SELECT x.notice FROM event x WHERE x.payment_id = p.payment_id AND x.notice IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS notice,
               (SELECT x.error FROM event x WHERE x.payment_id = p.payment_id AND x.error IS NOT NULL
                ORDER BY x.step DESC LIMIT 1) AS error,
               p.created_at, e.at AS updated_at,
               (SELECT x.at FROM event x WHERE x.payment_id = p.payment_id AND x.state = 'uploaded')
                AS uploaded_at
        FROM payment p JOIN event e ON e.payment_id = p.payment_id
         AND e.step = (SELECT MAX(m.step) FROM event m WHERE m.payment_id = p.payment_id);
        CREATE VIEW outbox AS
        SELECT payment_id, since AS enqueued_at, attempts, last_error FROM open WHERE state = 'approved';
        CREATE VIEW audit AS
        SELECT payment_id, at, from_state, state AS to_state, actor, detail FROM event;
        """,
    ),
    (
        # A payment's events are found by their key instead of a second index: event_id = seq * 8 + step,
        # where seq is the payment's receipt sequence (unique, never reused). The rowid B-tree keeps a
        # payment's events together in step order, and a state change writes two pages (its open row and
        # its event) instead of three: ~10% of a capture (`./dev bench journal`).
        2,
        """
        ALTER TABLE payment ADD COLUMN seq INTEGER;
        UPDATE payment SET seq = CAST(substr(receipt_number, length(terminal_id) + 2) AS INTEGER);
        CREATE UNIQUE INDEX payment_seq ON payment(seq);
        ALTER TABLE open ADD COLUMN seq INTEGER;
        UPDATE open SET seq = (SELECT p.seq FROM payment p WHERE p.payment_id = open.payment_id);
        DROP VIEW payments;
        DROP VIEW audit;
        CREATE TABLE event_v2 (
            event_id INTEGER PRIMARY KEY,  -- seq * 8 + step
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            step INTEGER NOT NULL CHECK (event_id % 8 = step),
            state TEXT NOT NULL,
            from_state TEXT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            card TEXT,
            authorization TEXT,
            notice TEXT,
            error TEXT,
            detail TEXT
        );
        INSERT INTO event_v2 (event_id, payment_id, step, state, from_state, at, actor, card, authorization,
                              notice, error, detail)
        SELECT p.seq * 8 + e.step, e.payment_id, e.step, e.state, e.from_state, e.at, e.actor, e.card,
               e.authorization, e.notice, e.error, e.detail
        FROM event e JOIN payment p USING (payment_id) ORDER BY p.seq, e.step;
        DROP TABLE event;
        ALTER TABLE event_v2 RENAME TO event;
        CREATE INDEX event_notice ON event(payment_id) WHERE notice IS NOT NULL;
        CREATE VIEW payments AS
        SELECT p.payment_id, p.transaction_id, p.bill_reference, p.amount, p.currency, p.method,
               e.state,
               (SELECT x.card FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.card IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS card,
               (SELECT x.authorization FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.authorization IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS authorization,
               p.agency_id, p.terminal_id, p.cashier_id, p.receipt_number, p.captured_at, p.captured_offline,
               p.bill,
               (SELECT x.notice FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.notice IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS notice,
               (SELECT x.error FROM event x WHERE x.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7
                AND x.error IS NOT NULL ORDER BY x.event_id DESC LIMIT 1) AS error,
               p.created_at, e.at AS updated_at,
               (SELECT x.at FROM event x WHERE x.event_id = p.seq * 8 + 4 AND x.state = 'uploaded')
                AS uploaded_at
        FROM payment p JOIN event e
         ON e.event_id = (SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7);
        CREATE VIEW audit AS
        SELECT payment_id, at, from_state, state AS to_state, actor, detail FROM event;
        """,
    ),
    (
        # The open row no longer holds the state (the latest event does), so a state change that neither opens
        # nor settles a payment writes its event only: a capture writes one page instead of two. Open rows are
        # keyed by seq: the outbox drains in capture order by walking the table, with no sort and no index.
        3,
        """
        DROP VIEW outbox;
        CREATE TABLE open_v3 (
            seq INTEGER PRIMARY KEY,  -- the payment's receipt sequence
            payment_id TEXT NOT NULL REFERENCES payment(payment_id),
            attempts INTEGER NOT NULL DEFAULT 0,  -- failed uploads while approved
            last_error TEXT
        );
        INSERT INTO open_v3 (seq, payment_id, attempts, last_error)
        SELECT seq, payment_id, attempts, last_error FROM open ORDER BY seq;
        DROP TABLE open;
        ALTER TABLE open_v3 RENAME TO open;
        CREATE VIEW unsettled AS
        SELECT o.seq, o.payment_id, e.state, e.at AS since, o.attempts, o.last_error
        FROM open o JOIN event e
         ON e.event_id = (SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN o.seq * 8 AND o.seq * 8 + 7);
        CREATE VIEW outbox AS
        SELECT payment_id, since AS enqueued_at, attempts, last_error FROM unsettled WHERE state = 'approved';
        -- An event must follow its payment's latest one: the file itself refuses a move from a stale state.
        CREATE TRIGGER event_follows_latest BEFORE INSERT ON event
        WHEN NEW.from_state IS NOT (SELECT e.state FROM event e WHERE e.event_id BETWEEN NEW.event_id - NEW.step
                                    AND NEW.event_id - 1 ORDER BY e.event_id DESC LIMIT 1)
        BEGIN SELECT RAISE(ABORT, 'event does not follow its payment''s latest state'); END;
        """,
    ),
    (
        # A loss the journal found in itself: committed payments gone (its high-water mark file, or the
        # server, had seen a later receipt number). No new payment while one is not accepted by a supervisor;
        # the row, with who accepted it and when, is the audit record of the loss.
        4,
        """
        CREATE TABLE incident (
            incident_id INTEGER PRIMARY KEY,
            detected_at TEXT NOT NULL,
            kind TEXT NOT NULL,           -- lost_payments (the journal.hwm file was ahead) | server_ahead
            message TEXT NOT NULL,        -- the one line shown
            journal_seq INTEGER NOT NULL, -- the journal's receipt counter when found
            expected_seq INTEGER NOT NULL, -- the receipt sequence the journal should have reached
            accepted_at TEXT,
            accepted_by TEXT
        );
        """,
    ),
]

# The order of states along any path of the state machine: the step of an event. Every path climbs strictly,
# and a payment enters each state at most once, so (payment_id, step) identifies an event.
STEP = {
    State.CREATED: 0,
    State.AUTHORIZING: 1,
    State.CANCELLED: 2,
    State.UNKNOWN: 2,
    State.DECLINED: 3,
    State.APPROVED: 3,
    State.UPLOADED: 4,
    State.REJECTED: 4,
}
# Settled for good: their open row goes. (Rejected stays open: a supervisor must see it.)
FINAL = frozenset({State.UPLOADED, State.DECLINED, State.CANCELLED})
RECENT = 256  # payments whose latest copy a journal keeps in memory (a basket holds at most a few)
SOURCES = {to: tuple(s.value for s, targets in ALLOWED.items() if to in targets) for to in State}


class _Move(NamedTuple):
    """What a transition to one state needs, worked out once: the capture path is hot."""

    state: str
    step: int
    sources: tuple[str, ...]
    final: bool
    point: str  # its crash points' stem: journal.<state>


# Keyed by value: a State (a str) finds its entry as fast as the plain string does.
_MOVES = {to.value: _Move(to.value, STEP[to], SOURCES[to], to in FINAL, f"journal.{to.value}") for to in State}


def _json(value: Any) -> str:
    """A journal column's JSON text, UTF-8 kept as is. orjson: the stdlib's json builds an encoder on every
    call, which the capture path pays twice (card, authorization)."""
    return orjson.dumps(value).decode()


SLOTS = 8  # event ids per payment: event_id = seq * SLOTS + step (migration 2)
assert max(STEP.values()) < SLOTS
_EVENT_SQL = (
    "INSERT INTO event (event_id, payment_id, step, state, from_state, at, actor, card, authorization, notice,"
    " error, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# A payment's receipt sequence and state (its latest event). Read, then written in a second statement: an
# INSERT guarded by a subquery on its own table copies the subquery's rows aside first, and costs more.
def _latest(t: str) -> str:
    """The key of the latest event of the payment whose `seq` is `t`.seq (a payment or open row), for
    `JOIN event e ON e.event_id = ...`: one rowid range seek."""
    return f"(SELECT MAX(m.event_id) FROM event m WHERE m.event_id BETWEEN {t}.seq * 8 AND {t}.seq * 8 + 7)"


def _latest_state(t: str) -> str:
    """The state of that latest event: the payment's state, in one rowid range seek."""
    return (
        f"(SELECT e.state FROM event e WHERE e.event_id BETWEEN {t}.seq * 8 AND {t}.seq * 8 + 7"
        " ORDER BY e.event_id DESC LIMIT 1)"
    )


_STATE_SQL = f"SELECT p.seq, {_latest_state('p')} FROM payment p WHERE p.payment_id = ?"


def _event_row(
    seq: int, pid: str, move: _Move, current: str, now: str, actor: str, event: tuple[Any, ...]
) -> tuple[Any, ...]:
    """The parameters of _EVENT_SQL for `pid`'s move from `current`; `event` is (card, authorization,
    notice, error, detail). Keyed seq * 8 + step: a second entry into the same state is refused."""
    return (seq * SLOTS + move.step, pid, move.step, move.state, current, now, actor, *event)



def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7): new payments' keys sort last, so the journal's B-trees
    grow at their right edge instead of splitting pages at random; still 74 random bits, unique."""
    value = (int(time.time() * 1000) & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def now_rfc3339() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


_SECOND: tuple[int, str, str] = (-1, "", "")  # the last second formatted: epoch, date and time, UTC offset


def now_precise() -> str:
    """Local time to the microsecond with its UTC offset: `2026-11-22T09:14:03.123456+01:00`.

    Every journal event is stamped with it, so the date, time and offset are worked out once a second
    (the offset then follows any change of the local zone) and only the microseconds per call.
    """
    global _SECOND
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    last = _SECOND
    if last[0] != second:
        stamp = datetime.fromtimestamp(second).astimezone().isoformat()  # 2026-11-22T09:14:03+01:00
        last = _SECOND = (second, stamp[:19], stamp[19:])
    return f"{last[1]}.{micro:06d}{last[2]}"


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
    seq: int = 0  # the receipt sequence: the number in receipt_number
    # {"by", "from": "terminal_ticket" | "server", "at"} when a person settled an unknown outcome (contract 1.1);
    # kept in that event's detail JSON, so no migration
    settlement: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Payment:
        data = {k: row[k] for k in _FIELDS}
        for key in ("card", "authorization", "bill"):
            data[key] = orjson.loads(data[key]) if data[key] else None
        data["captured_offline"] = bool(data["captured_offline"])
        return cls(**data)

    def _evolve(self, changes: dict[str, Any]) -> Payment:
        """A copy with `changes` applied: what dataclasses.replace does, without re-running __init__ over
        twenty fields on the capture path (the fields were checked when this copy was built)."""
        new = object.__new__(Payment)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

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
        if self.card is not None and self.method != "cash":  # the contract: null for cash
            if self.settlement is not None:
                # Settled by a person: the card holds only what a ticket shows, the token when known (1.1).
                card = {k: self.card.get(k) for k in SETTLED_CARD_KEYS}
            else:
                card = {k: self.card.get(k) for k in CARD_KEYS}
        auth = None
        if self.authorization is not None and self.method != "cash":  # the contract: null for cash
            auth = {k: self.authorization.get(k) for k in ("code", "reference", "approved_at")}
        body: dict[str, Any] = {
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
        # Only for a card payment a person settled: a 1.0 server refuses the field even when null, and the
        # contract's cash shape has none (who settled a cash payment stays in the journal's audit trail).
        if self.settlement is not None and card is not None:
            body["settlement"] = {k: self.settlement.get(k) for k in ("by", "from", "at")}
        return body


_FIELDS = tuple(f.name for f in dataclasses.fields(Payment))
CARD_KEYS = ("scheme", "pan_masked", "pan_token", "expiry", "aid")
SETTLED_CARD_KEYS = ("scheme", "pan_masked", "pan_token")


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


def open_database(path: Path, migrations: Sequence[tuple[int, str]]) -> sqlite3.Connection:
    """Open (creating) an SQLite file with the house settings and apply pending migrations.

    Raises JournalError with a one-line reason for a corrupt, unreadable or read-only file.
    """
    try:
        ensure_state_dir(path.parent)
        create_private(path)  # before SQLite creates it with the umask's mode
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        conn.row_factory = sqlite3.Row
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(f"{path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        _migrate(conn, path, migrations)
        create_private(path)  # and its -wal and -shm, now that they exist
        return conn
    except sqlite3.DatabaseError as e:
        raise JournalError(f"{path}: {describe_sqlite_error(e)}") from None
    except PermissionError as e:
        raise JournalError(f"{path}: permission denied ({e.strerror})") from None
    except OSError as e:
        raise JournalError(f"{path}: {describe_os_error(e)}") from None


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


HWM_NAME = "journal.hwm"
# One record of the high-water mark: magic, receipt sequence, payment id, CRC-32 of the rest. Two slots
# (by the sequence's parity), so a torn write of one leaves the other, one payment behind, readable.
_HWM = struct.Struct("<4sQ36sI")
_HWM_MAGIC = b"GHW1"
_HWM_SLOT = 64


class HighWater:
    """The journal's high-water mark, kept OUTSIDE the database file: the last receipt sequence and payment
    id the journal committed. A journal that lost committed pages (a damaged WAL frame drops every later
    frame silently) is found behind it on open.

    Written after each commit that creates payments, one pwrite of a fixed record on a descriptor kept
    open, then fdatasync'ed (`write(..., sync=True)`, as `create` does): a power cut that damages the WAL
    cannot take payments with it unseen, and a crash leaves the mark behind the journal, never ahead.

    >>> hw = HighWater(state_dir / HWM_NAME); hw.write(42, payment_id); hw.read()
    (42, '0193...')
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = open_private(path)
        self.seq = 0  # the highest sequence this process wrote or read

    def read(self) -> tuple[int, str]:
        """(sequence, payment id) of the latest whole record; (0, "") when there is none."""
        assert self._fd is not None
        best = _parse_high_water(os.pread(self._fd, 2 * _HWM_SLOT, 0))
        self.seq = max(self.seq, best[0])
        return best

    def write(self, seq: int, payment_id: str, *, sync: bool = False) -> None:
        """Record that the journal committed sequence `seq` (payment `payment_id`); never moves back.
        `sync`: on disk when this returns (one fdatasync: the file's size never changes)."""
        if seq <= self.seq or self._fd is None:
            return
        body = _HWM.pack(_HWM_MAGIC, seq, payment_id.encode("ascii", "replace")[:36], 0)[: _HWM.size - 4]
        os.pwrite(self._fd, body + struct.pack("<I", zlib.crc32(body)), (seq % 2) * _HWM_SLOT)
        self.seq = seq
        if sync:
            os.fdatasync(self._fd)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass  # behind after a power cut at worst: harmless
            os.close(self._fd)
            self._fd = None


def _parse_high_water(data: bytes) -> tuple[int, str]:
    """(sequence, payment id) of the latest whole record in the mark file's bytes; (0, "") if none."""
    best = (0, "")
    for slot in (0, 1):
        raw = data[slot * _HWM_SLOT : slot * _HWM_SLOT + _HWM.size]
        if len(raw) < _HWM.size:
            continue
        magic, seq, pid, crc = _HWM.unpack(raw)
        if magic != _HWM_MAGIC or zlib.crc32(raw[: _HWM.size - 4]) != crc:
            continue  # never written, or torn: the other slot holds the one before
        if seq > best[0]:
            best = (seq, pid.rstrip(b"\0").decode("ascii", "replace"))
    return best


def read_high_water(path: Path) -> tuple[int, str]:
    """The mark file at `path`, read-only (never created, never chmod'ed): (0, "") if it does not exist.
    Raises OSError if it exists but cannot be read. For readers that are not the journal (doctor)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return 0, ""
    try:
        return _parse_high_water(os.pread(fd, 2 * _HWM_SLOT, 0))
    finally:
        os.close(fd)


class MarkReading(NamedTuple):
    """The high-water mark and the journal's receipt counter, read in that order (`compare_high_water`)."""

    mark: int  # the mark file's sequence
    payment_id: str  # the mark's payment id ("" if unknown)
    counter: int  # the journal's receipt counter

    @property
    def lost(self) -> bool:
        """Committed payments are missing from the journal: the mark is ahead of it."""
        return self.mark > self.counter


def compare_high_water(read_mark: Callable[[], tuple[int, str]], read_counter: Callable[[], int]) -> MarkReading:
    """Read the mark, THEN the journal's counter. A writer moves the mark after its commit, so a mark read
    first is always covered by a counter read next, unless payments were really lost: read the other way
    round, a payment committed in between looks like a loss. The one place that order lives (the journal
    on open, the doctor)."""
    seq, pid = read_mark()
    return MarkReading(seq, pid, read_counter())


PENDING_NAME = "journal.pending"
# Outcomes the journal could not write (disk full, I/O error), kept until it can: a file of fixed slots
# written in place, preallocated while there is room, so that parking an outcome needs no new block.
_PENDING_SLOTS = 32
_PENDING_SLOT = 2048
_PENDING_HEAD = struct.Struct("<4sII")  # magic, length, CRC-32 of the JSON
_PENDING_MAGIC = b"GPO1"


def _parse_pending(data: bytes) -> builtins.list[tuple[int, dict[str, Any]]]:
    """(slot, record) of every whole record in journal.pending's bytes, oldest slot first; only the first
    _PENDING_SLOTS slots are ever used."""
    out = []
    for slot in range(min(len(data) // _PENDING_SLOT, _PENDING_SLOTS)):
        raw = data[slot * _PENDING_SLOT : (slot + 1) * _PENDING_SLOT]
        magic, length, crc = _PENDING_HEAD.unpack_from(raw)
        body = raw[_PENDING_HEAD.size : _PENDING_HEAD.size + length]
        if magic != _PENDING_MAGIC or len(body) != length or zlib.crc32(body) != crc:
            continue  # free, or torn
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((slot, record))
    return out


def read_pending(path: Path) -> builtins.list[dict[str, Any]]:
    """The outcomes parked in journal.pending at `path`, read-only ([] if there is no file); for readers
    that are not the journal (doctor). Raises OSError if it exists but cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return []
    try:
        return [r for _, r in _parse_pending(os.pread(fd, _PENDING_SLOTS * _PENDING_SLOT, 0))]
    finally:
        os.close(fd)


class PendingOutcomes:
    """Outcomes (an approval above all) that the journal failed to write, parked until it can.

    Each is one JSON record in one of _PENDING_SLOTS slots of a preallocated file (0600; no PAN: a card here
    is what the journal stores, masked and tokenized), fsynced; `Journal.replay_pending` writes them into the
    journal and clears their slots. A torn or never-written slot fails its CRC and is free. Every failure is
    a StorageError (one line); `add` raises it too when every slot is taken, rather than overwrite one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = open_private(path)
        self._fd: int | None = fd
        size = os.fstat(fd).st_size
        if size < _PENDING_SLOTS * _PENDING_SLOT:
            try:  # real zeros, not a hole: writing into the slots later must not need a free block
                os.pwrite(fd, bytes(_PENDING_SLOTS * _PENDING_SLOT - size), size)
                os.fsync(fd)
            except OSError as e:
                log.warning("%s: cannot preallocate (%s)", path, e.strerror)
        self.count = len(self.items())

    def items(self) -> builtins.list[tuple[int, dict[str, Any]]]:
        """(slot, record) of every parked outcome, oldest slot first."""
        if self._fd is None:
            return []
        with storage_errors(self.path, "cannot read the parked outcomes"):
            data = os.pread(self._fd, _PENDING_SLOTS * _PENDING_SLOT, 0)
        return _parse_pending(data)

    def add(self, record: dict[str, Any]) -> None:
        """Park `record` in a free slot, on disk when this returns; StorageError if it cannot be (no free
        slot, record too big, disk error): never overwrites a parked outcome."""
        if self._fd is None:
            raise StorageError(f"{self.path}: closed")
        body = orjson.dumps(record)
        if len(body) > _PENDING_SLOT - _PENDING_HEAD.size:
            raise StorageError(f"{self.path}: the outcome ({len(body)} bytes) does not fit a slot")
        used = {slot for slot, _ in self.items()}
        free = next((n for n in range(_PENDING_SLOTS) if n not in used), None)
        if free is None:
            raise StorageError(
                f"{self.path}: all {_PENDING_SLOTS} slots hold outcomes not yet written to the journal;"
                " free disk space so they can be"
            )
        with storage_errors(self.path, "cannot park the outcome"):
            os.pwrite(self._fd, _PENDING_HEAD.pack(_PENDING_MAGIC, len(body), zlib.crc32(body)) + body,
                      free * _PENDING_SLOT)
            os.fsync(self._fd)
        self.count = len(used) + 1

    def clear(self, slot: int) -> None:
        """Free `slot`: the whole slot zeroed (nothing of the outcome stays behind), fsynced."""
        if self._fd is not None:
            with storage_errors(self.path, "cannot clear a parked outcome"):
                os.pwrite(self._fd, bytes(_PENDING_SLOT), slot * _PENDING_SLOT)
                os.fsync(self._fd)
            self.count = max(0, self.count - 1)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Journal:
    """The payments journal of one terminal. Thread-safe: one connection, one lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, terminal_id: str, agency_id: str) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self.terminal_id = terminal_id
        self.agency_id = agency_id
        self._recent: dict[str, Payment] = {}
        self._hwm: HighWater | None = None
        self._pending: PendingOutcomes | None = None
        # Why no new payment may be taken (see `damage`): a failed integrity check (this connection's open),
        # a loss recorded in the incident table and not accepted (re-read from the table before every new
        # payment: another connection or process may record or accept one), a loss this object found but
        # could not record.
        self._integrity: str | None = None
        self._loss: str | None = None
        self._unrecorded: str | None = None

    @property
    def damage(self) -> str | None:
        """Why no new payment may be taken (one line, with the way out), or None. Reading stays possible.
        As of the last check: `require_healthy()` re-reads the recorded losses."""
        return self._integrity or self._loss or self._unrecorded

    @classmethod
    def open(
        cls, state_dir: str | os.PathLike[str], *, terminal_id: str, agency_id: str, check: bool = True
    ) -> Journal:
        """Open (creating) the journal of `state_dir`, check it, and compare it with its high-water mark.

        A damaged journal still opens, so that what it holds can be read, listed and uploaded; `damage`
        then says why, it is logged as an error, and `create` (so every new payment) raises JournalDamaged.
        `check=False` skips SQLite's quick_check (O(file size)), for a second connection of one process.
        """
        ensure_state_dir(state_dir)
        path = Path(state_dir) / DB_NAME
        journal = cls(open_database(path, MIGRATIONS), path, terminal_id, agency_id)
        try:
            if check:
                journal._integrity = journal._quick_check()
            journal._open_high_water()
            try:
                journal._pending = PendingOutcomes(path.with_name(PENDING_NAME))
            except (OSError, StorageError) as e:
                # Parking is then impossible (an outcome the disk refuses shows as unknown), nothing is lost.
                log.error("%s: cannot open (%s)", path.with_name(PENDING_NAME), getattr(e, "strerror", None) or e)
        except BaseException:
            journal.close()
            raise
        if journal.damage:
            log.error("%s", journal.damage)
        return journal

    def close(self) -> None:
        with self._lock:
            if self._hwm is not None:
                self._hwm.close()
            if self._pending is not None:
                self._pending.close()
            self._conn.close()

    # -- integrity -------------------------------------------------------------------------------

    def _quick_check(self) -> str | None:
        """SQLite's quick_check (every page's structure, not the indexes' content): a line, or None if ok."""
        try:
            with self._lock:
                rows = self._conn.execute("PRAGMA quick_check(3)").fetchall()
            problems = [str(r[0]) for r in rows]
        except sqlite3.DatabaseError as e:
            problems = [str(e)]
        if problems == ["ok"]:
            return None
        what = "; ".join(p.replace("\n", " ")[:120] for p in problems)
        return (
            f"{self.path}: the journal is damaged ({what}); no new payment until it is restored: list and"
            " upload what it holds (`guichet queue list`, `guichet sync`), then restore it from backup or call"
            " support"
        )

    def _open_high_water(self) -> None:
        """Read the high-water mark file, compare it with the journal, and bring either forward.

        The file is read BEFORE the journal's counter: another process writes it after its commit, so a
        mark we read is always covered by the counter we read next, unless payments were really lost.
        """
        try:
            self._hwm = HighWater(self.path.with_name(HWM_NAME))
        except OSError as e:
            # Without it a lost WAL frame goes unseen, but nothing stored is at risk: say so, go on.
            log.error("%s: the high-water mark cannot be used (%s)", self.path.with_name(HWM_NAME), e.strerror)
            self._hwm = None
        hwm = self._hwm
        try:
            with self._lock:
                seq, pid, counter = compare_high_water(hwm.read if hwm else lambda: (0, ""), self._counter)
                if seq > counter:
                    self._record_loss(
                        "lost_payments",
                        seq,
                        f"{self.path}: the journal lost committed payments: it ends at receipt"
                        f" {self._receipt(counter)} but had recorded {self._receipt(seq)} (payment {pid or '?'})"
                        " (damaged or replaced file); no new payment until a supervisor runs"
                        " `guichet journal accept-loss --supervisor ID`, after checking the lost receipts with"
                        " the server",
                    )
                elif seq < counter and self._hwm is not None:
                    row = self._conn.execute("SELECT payment_id FROM payment WHERE seq = ?", (counter,)).fetchone()
                    self._hwm.write(counter, row[0] if row else "")
                    self._hwm.sync()
                self._refresh_loss()
        except sqlite3.DatabaseError as e:
            self._integrity = self._integrity or (
                f"{self.path}: the journal cannot be read ({describe_sqlite_error(e)})"
            )
        except OSError as e:
            log.error("%s: the high-water mark cannot be read or written (%s)", self.path.with_name(HWM_NAME),
                      e.strerror)

    def _refresh_loss(self) -> None:
        """Under self._lock: the first recorded loss not yet accepted, from the table (whichever connection
        or process recorded or accepted it). One lookup in a table of a few rows. Raises sqlite3 errors."""
        row = self._conn.execute(
            "SELECT message FROM incident WHERE accepted_at IS NULL ORDER BY incident_id LIMIT 1"
        ).fetchone()
        self._loss = str(row[0]) if row is not None else None

    def _counter(self) -> int:
        return int(self._conn.execute("SELECT value FROM counters WHERE name = 'receipt'").fetchone()[0])

    def _receipt(self, seq: int) -> str:
        return f"{self.terminal_id}-{seq:06d}"

    def _record_loss(self, kind: str, expected: int, message: str) -> None:
        """Under self._lock: note the loss (persisted if the file takes it), move the receipt counter past
        `expected` so no receipt number is ever issued twice, and block new payments."""
        self._unrecorded = message
        log.error("%s", message)
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                counter = self._counter()
                if expected > counter:
                    self._conn.execute(
                        "INSERT INTO incident (detected_at, kind, message, journal_seq, expected_seq)"
                        " VALUES (?,?,?,?,?)",
                        (now_precise(), kind, message, counter, expected),
                    )
                    self._conn.execute("UPDATE counters SET value = ? WHERE name = 'receipt'", (expected,))
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            # Not persisted: found again at the next open (the mark is still ahead); blocked meanwhile.
            log.error("%s: cannot record the loss (%s)", self.path, describe_sqlite_error(e))
            return
        self._loss, self._unrecorded = message, None
        if self._hwm is not None:
            try:
                self._hwm.write(expected, "")
                self._hwm.sync()
            except OSError as e:
                log.error("%s: cannot write the high-water mark (%s)", self._hwm.path, e.strerror)

    def require_healthy(self) -> None:
        """Raise JournalDamaged (its one line says why and what to do) if no new payment may be taken.

        Losses are read from the table, so one that another connection or process recorded blocks here, and
        one a supervisor accepted (`guichet journal accept-loss` in another process) unblocks."""
        with self._reading():
            self._refresh_loss()
        if self.damage is not None:
            raise JournalDamaged(self.damage)

    def high_water(self) -> str | None:
        """The last receipt number this journal issued (its counter or its high-water mark file, whichever
        is ahead), or None before the first payment. Sent in the heartbeat as `last_receipt_number`."""
        with self._reading():
            seq = self._counter()
            if self._hwm is not None:
                seq = max(seq, self._hwm.seq)
        return self._receipt(seq) if seq else None

    def check_server_high_water(self, receipt_number: str | None) -> None:
        """Compare with the highest receipt number the server has seen from this terminal.

        If the server is ahead, payments this journal committed (and uploaded) are gone from it: the loss
        is recorded (persisted), new payments are refused until a supervisor accepts it, and the receipt
        counter moves past the server's number so that no receipt number is issued twice. A number that is
        not one of this terminal's raises GuichetError (one line) and changes nothing.
        """
        if not receipt_number:
            return
        prefix = f"{self.terminal_id}-"
        digits = receipt_number[len(prefix) :] if receipt_number.startswith(prefix) else ""
        if not (digits.isascii() and digits.isdigit() and len(digits) <= 12):
            raise GuichetError(
                f"server high-water mark {receipt_number[:60]!r}: not a receipt number of terminal {self.terminal_id}"
            )
        seq = int(digits)
        with self._lock:
            try:
                counter = self._counter()
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path}: read failed: {describe_sqlite_error(e)}") from None
            if seq <= counter:
                return
            self._record_loss(
                "server_ahead",
                seq,
                f"{self.path}: the billing server has receipt {receipt_number} from this terminal but the journal"
                f" ends at {self._receipt(counter)}: committed payments were lost (damaged or replaced file);"
                " no new payment until a supervisor runs `guichet journal accept-loss --supervisor ID`",
            )

    def incidents(self) -> builtins.list[dict[str, Any]]:
        """Every loss the journal found, oldest first, with who accepted it."""
        with self._reading():
            return [dict(r) for r in self._conn.execute("SELECT * FROM incident ORDER BY incident_id")]

    def accept_loss(self, supervisor: str) -> int:
        """A supervisor acknowledges the recorded losses (after checking the lost receipts with the server):
        payments may be taken again, numbered after every receipt ever issued. Returns how many were
        accepted. A journal that fails its integrity check stays blocked: that needs a restore."""
        supervisor = supervisor.strip()
        if not supervisor:
            raise GuichetError("supervisor: required to accept a loss")
        with self._tx("journal.accept_loss") as c:
            n = c.execute(
                "UPDATE incident SET accepted_at = ?, accepted_by = ? WHERE accepted_at IS NULL",
                (now_precise(), supervisor[:64]),
            ).rowcount
            if self._hwm is not None:
                c.execute(
                    "UPDATE counters SET value = MAX(value, ?) WHERE name = 'receipt'", (self._hwm.read()[0],)
                )
            self._refresh_loss()
        self._unrecorded = None
        if self._integrity is not None:
            self._integrity = self._quick_check()
        return int(n)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self, name: str = "") -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE so concurrent writers queue instead of failing late."""
        with self._lock:
            c = self._begin()
            try:
                yield c
                self._commit(name)
            except BaseException as e:
                self._abort(e)

    # transition(), the capture path, calls these three itself: a generator context costs it microseconds.
    def _begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE, under self._lock."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as e:
            raise JournalError(f"{self.path}: cannot write: {describe_sqlite_error(e)}") from None
        return self._conn

    def _commit(self, name: str) -> None:
        """COMMIT, between the crash points `name`.before_commit and `name`.after_commit."""
        if ARMED:
            crashpoint(name + ".before_commit")
        self._conn.execute("COMMIT")
        if ARMED:
            crashpoint(name + ".after_commit")

    def _abort(self, e: BaseException) -> NoReturn:
        """Roll back the transaction `e` interrupted and raise it again (a database error as JournalError)."""
        if self._conn.in_transaction:  # a failed COMMIT may have rolled back already
            self._conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.DatabaseError):
            raise JournalError(f"{self.path}: write failed: {describe_sqlite_error(e)}") from None
        raise e

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """self._lock, with a database error (damaged page, I/O error) as JournalError: one line."""
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path}: read failed: {describe_sqlite_error(e)}") from None

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> builtins.list[Payment]:
        """Payments whose ids `sql` selects (first column), in its order; built by _load like every other."""
        with self._lock:
            try:
                ids = [r[0] for r in self._conn.execute(sql, tuple(params))]
            except sqlite3.DatabaseError as e:
                raise JournalError(f"{self.path}: read failed: {describe_sqlite_error(e)}") from None
        return self._load(ids)

    def _load(self, ids: Sequence[str]) -> builtins.list[Payment]:
        """Payments by id, in that order: their facts, folded with their events (two key lookups)."""
        out: builtins.list[Payment] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            with self._lock:
                try:
                    facts = {
                        r["payment_id"]: dict(r)
                        for r in self._conn.execute(f"SELECT * FROM payment WHERE payment_id IN ({marks})", chunk)
                    }
                    events = self._conn.execute(
                        "SELECT e.payment_id, e.state, e.at, e.card, e.authorization, e.notice, e.error, e.detail"
                        " FROM payment p JOIN event e ON e.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7"
                        f" WHERE p.payment_id IN ({marks}) ORDER BY e.event_id",
                        chunk,
                    ).fetchall()
                except sqlite3.DatabaseError as e:
                    raise JournalError(f"{self.path}: read failed: {describe_sqlite_error(e)}") from None
            for pid, state, at, card, authorization, notice, error, detail in events:
                f = facts[pid]
                f["state"], f["updated_at"] = state, at
                f.setdefault("card", None)
                f.setdefault("authorization", None)
                f.setdefault("notice", None)
                f.setdefault("error", None)
                f.setdefault("uploaded_at", None)
                f.setdefault("settlement", None)
                if detail is not None and '"settlement"' in detail:  # parsed only where a person settled
                    f["settlement"] = orjson.loads(detail).get("settlement") or f["settlement"]
                if card is not None:
                    f["card"] = card
                if authorization is not None:
                    f["authorization"] = authorization
                if notice is not None:
                    f["notice"] = notice
                if error is not None:
                    f["error"] = error
                if state == State.UPLOADED:
                    f["uploaded_at"] = at
            out += [Payment.from_row(facts[pid]) for pid in chunk if pid in facts]
        return out

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
        ids = [uuid7() for _ in items]
        transaction_id = ids[0]
        now = now_precise()
        captured_at = now_rfc3339()
        with self._tx("journal.create") as c:
            # Inside the write transaction: a loss another connection or process recorded (or accepted) is
            # seen here, and none can be recorded between this check and the payment's commit.
            self._refresh_loss()
            if self.damage is not None:
                raise JournalDamaged(self.damage)
            for pid, item in zip(ids, items, strict=True):
                seq = c.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'receipt' RETURNING value"
                ).fetchone()[0]
                c.execute(
                    "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method,"
                    " agency_id, terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill,"
                    " created_at, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        pid,
                        transaction_id,
                        item.bill["reference"],
                        item.amount,
                        currency,
                        method,
                        self.agency_id,
                        self.terminal_id,
                        cashier_id,
                        f"{self.terminal_id}-{seq:06d}",
                        captured_at,
                        int(captured_offline),
                        _json(item.bill),
                        now,
                        seq,
                    ),
                )
                c.execute(
                    _EVENT_SQL,
                    (
                        seq * SLOTS + STEP[State.CREATED],
                        pid,
                        STEP[State.CREATED],
                        State.CREATED.value,
                        None,
                        now,
                        actor or cashier_id,
                        None,
                        None,
                        None,
                        None,
                        None,
                    ),
                )
                c.execute("INSERT INTO open (seq, payment_id) VALUES (?, ?)", (seq, pid))
        if self._hwm is not None:
            # After the commit: the mark may lag the journal (a crash here), never lead it. Synced: a power
            # cut that damages the WAL must not take this payment with it unseen (one fdatasync, see
            # docs/core.md for its cost).
            try:
                self._hwm.write(seq, ids[-1], sync=True)
            except OSError as e:
                log.error("%s: cannot write the high-water mark (%s)", self._hwm.path, e.strerror)
        return self._remember(self._load(ids))

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
        """Move payments to `to` in one transaction: one event each; a payment settled for good leaves `open`.

        Raises InvalidTransition, leaving everything as it was, if any payment may not make that move.
        """
        ids = (payment_ids,) if isinstance(payment_ids, str) else tuple(payment_ids)
        move = _MOVES.get(to) or _MOVES[State(to)]  # State() names a bad value
        now = now_precise()
        event = (
            None if card is None else _json(card),
            None if authorization is None else _json(authorization),
            notice,
            error,
            _json(detail) if detail else None,
        )
        changes: dict[str, Any] = {"state": move.state, "updated_at": now}
        if card is not None:
            changes["card"] = card
        if authorization is not None:
            changes["authorization"] = authorization
        if notice is not None:
            changes["notice"] = notice
        if error is not None:
            changes["error"] = error
        if move.state == State.UPLOADED:
            changes["uploaded_at"] = now
        if detail and "settlement" in detail:  # as _load folds it
            changes["settlement"] = detail["settlement"]
        with self._lock:
            # A payment enters each state once and every change of any of its fields is a state change, so
            # a copy we hold in the state it just left is exactly the payment before this event: no read-back.
            copies = list(map(self._recent.get, ids))
            if (
                len(ids) == 1
                and (held := copies[0]) is not None
                and held.state in move.sources
                and not move.final
                and self._append_alone(held, move, now, actor, event)
            ):
                self._recent[held.payment_id] = new = held._evolve(changes)
                return [new]
            c = self._begin()
            try:
                fresh = True
                for pid, copy in zip(ids, copies, strict=True):
                    seq, current = self._state(c, pid)
                    if current not in move.sources:
                        raise InvalidTransition(f"payment {pid}: cannot go from {current} to {move.state}")
                    self._append(c, seq, pid, move, current, now, actor, event)
                    if copy is None or copy.state != current:
                        fresh = False
                self._commit(move.point)
            except BaseException as e:
                self._abort(e)
            if fresh:
                out = [copy._evolve(changes) for copy in copies]  # type: ignore[union-attr]
                for p in out:
                    self._recent[p.payment_id] = p  # already held: nothing to evict
                return out
        return self._remember(self._load(ids))

    def _remember(self, payments: builtins.list[Payment]) -> builtins.list[Payment]:
        """Keep the latest copies this process wrote (bounded), for the next transition's answer."""
        with self._lock:
            for p in payments:
                self._recent[p.payment_id] = p
            while len(self._recent) > RECENT:
                self._recent.pop(next(iter(self._recent)))
        return payments

    def _append_alone(self, held: Payment, move: _Move, now: str, actor: str, event: tuple[Any, ...]) -> bool:
        """The capture path, under self._lock: one payment whose state we hold, to a state that keeps it open.
        Its event is one INSERT, a transaction of its own: one WAL page, one sync. The trigger
        event_follows_latest refuses it if `held` is no longer the payment's latest state (another process
        moved it): then nothing is written, and False sends the caller to read the state instead."""
        try:
            if ARMED:
                crashpoint(move.point + ".before_commit")
            self._conn.execute(
                _EVENT_SQL, _event_row(held.seq, held.payment_id, move, held.state, now, actor, event)
            )
        except sqlite3.IntegrityError:
            return False
        except BaseException as e:
            self._abort(e)
        if ARMED:
            crashpoint(move.point + ".after_commit")
        return True

    @staticmethod
    def _state(c: sqlite3.Connection, pid: str) -> tuple[int, str]:
        """`pid`'s receipt sequence and current state, inside a write transaction."""
        row = c.execute(_STATE_SQL, (pid,)).fetchone()
        if row is None:
            raise InvalidTransition(f"payment {pid}: not in the journal")
        return row[0], row[1]

    @staticmethod
    def _append(
        c: sqlite3.Connection, seq: int, pid: str, move: _Move, current: str, now: str, actor: str,
        event: tuple[Any, ...],
    ) -> None:
        """Write the event of `pid`'s move from `current` (checked by the caller); a payment settled for good
        leaves `open`."""
        c.execute(_EVENT_SQL, _event_row(seq, pid, move, current, now, actor, event))
        if move.final:
            c.execute("DELETE FROM open WHERE seq = ?", (seq,))

    def park(
        self,
        payment_ids: Sequence[str],
        to: State,
        *,
        actor: str,
        card: dict[str, Any] | None = None,
        authorization: dict[str, Any] | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Keep an outcome that `transition` could not write (disk full, I/O error) in journal.pending,
        fsynced, for `replay_pending` to write once the journal can. Raises StorageError if even that fails
        (every slot taken, disk error): the caller must then say the outcome was NOT kept."""
        record = {
            "payment_ids": builtins.list(payment_ids),
            "to": str(State(to).value),
            "actor": actor,
            "card": card,
            "authorization": authorization,
            "error": error,
            "detail": detail,
            "at": now_precise(),
        }
        if self._pending is None:
            raise StorageError(f"{self.path.with_name(PENDING_NAME)}: not available")
        with self._lock:
            self._pending.add(record)

    @property
    def parked(self) -> int:
        """Outcomes waiting in journal.pending to be written into the journal."""
        return self._pending.count if self._pending is not None else 0

    def parked_outcomes(self) -> builtins.list[dict[str, Any]]:
        """The outcomes waiting in journal.pending, oldest slot first: {"payment_ids", "to", "at",
        "missing"} where `missing` lists the payment ids the journal does not hold (such an outcome is kept,
        never replayed nor dropped: a person must look). Raises StorageError or JournalError (one line)."""
        if self._pending is None:
            return []
        with self._lock:
            items = self._pending.items()
        out = []
        for _, r in items:
            ids = [str(i) for i in r.get("payment_ids") or []]
            held = {p.payment_id for p in self._load(ids)}
            out.append({"payment_ids": ids, "to": r.get("to"), "at": r.get("at"),
                        "missing": [i for i in ids if i not in held]})
        return out

    def replay_pending(self) -> builtins.list[Payment]:
        """Write parked outcomes into the journal (a payment still `authorizing` or `unknown` takes it; one
        already settled keeps its state, logged at error if that differs) and clear their slots. An outcome
        whose payments the journal does not hold is kept (and listed by `guichet journal check` and the
        doctor). Stops at the first write that fails again; raises StorageError if the file cannot be read."""
        if self._pending is None or not self._pending.count:
            return []
        done: builtins.list[Payment] = []
        with self._lock:
            items = self._pending.items()
        for slot, r in items:
            ids = [str(i) for i in r.get("payment_ids") or []]
            missing: builtins.list[str] = []
            try:
                to = State(str(r.get("to")))
                found = self._load(ids)
                held = {p.payment_id for p in found}
                missing = [i for i in ids if i not in held]
                for p in found:
                    if p.state not in (State.AUTHORIZING, State.UNKNOWN) and p.state != to:
                        log.error(
                            "%s: payment %s is %s in the journal but its parked outcome says %s; the journal's"
                            " state is kept, the parked record was: %s",
                            self._pending.path, p.payment_id, p.state, to.value, _json(r),
                        )
                waiting = [p.payment_id for p in found if p.state in (State.AUTHORIZING, State.UNKNOWN)]
                if waiting:
                    done += self.transition(
                        waiting,
                        to,
                        actor=str(r.get("actor") or "recovery"),
                        card=r.get("card"),
                        authorization=r.get("authorization"),
                        error=r.get("error"),
                        detail={**(r.get("detail") or {}), "parked_at": r.get("at"), "from": PENDING_NAME},
                    )
            except (InvalidTransition, ValueError) as e:
                log.error("%s: parked outcome for %s not written (%s); the record was: %s",
                          self._pending.path, ids, e, _json(r))
            except JournalError as e:
                log.error("%s: parked outcomes still wait: %s", self._pending.path, e)
                break
            if missing:
                # Evidence of money taken that the journal does not know (a replaced or damaged journal?):
                # never thrown away; listed by `guichet journal check` and the doctor.
                log.error("%s: parked outcome (%s) kept: payment(s) %s not in the journal; the record: %s",
                          self._pending.path, r.get("to"), ", ".join(missing), _json(r))
                continue
            with self._lock:
                self._pending.clear(slot)
        return done

    def recover(self, actor: str = "recovery") -> builtins.list[Payment]:
        """After a crash: an outcome parked in journal.pending is written first; then `authorizing` becomes
        `unknown` (the card may have been charged: never guess), `created` becomes `cancelled` (nothing was
        asked for money yet). Returns what it changed. A parked outcome that cannot be replayed now stays
        parked (logged); its payment turns `unknown` and takes the outcome when a later replay succeeds."""
        changed: builtins.list[Payment] = []
        try:
            changed += self.replay_pending()
        except GuichetError as e:
            log.error("parked outcomes not replayed: %s", e)
        with self._reading():
            rows = self._conn.execute(
                "SELECT payment_id, state FROM unsettled WHERE state IN ('authorizing', 'created') ORDER BY seq"
            ).fetchall()
        for pid, state in rows:
            to = State.UNKNOWN if state == State.AUTHORIZING else State.CANCELLED
            changed += self.transition(pid, to, actor=actor, detail={"reason": "agent restarted during this step"})
        return changed

    def record_upload_results(self, results: Sequence[dict[str, Any]], actor: str = "sync") -> dict[str, int]:
        """Apply one batch's results in one transaction: accepted/duplicate -> uploaded, rejected -> rejected.

        Only payments still `approved` move: a replayed answer changes nothing.
        """
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "skipped": 0}
        now = now_precise()
        done = {status: _json({"upload": status}) for status in ("accepted", "duplicate", "rejected")}
        with self._tx("sync.record") as c:
            ids = [r["payment_id"] for r in results]
            # Each payment's seq and state, read for the whole batch at once (under the write lock).
            states: dict[str, tuple[int, str]] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                states.update(
                    (pid, (seq, state))
                    for pid, seq, state in c.execute(
                        f"SELECT p.payment_id, p.seq, {_latest_state('p')} FROM payment p"
                        f" WHERE p.payment_id IN ({','.join('?' * len(chunk))})",
                        chunk,
                    )
                )
            events: builtins.list[tuple[Any, ...]] = []
            settled: builtins.list[tuple[int]] = []
            for r in results:
                status = r.get("status")
                pid = r["payment_id"]
                if status in ("accepted", "duplicate"):
                    move, error, notice = _MOVES[State.UPLOADED], None, r.get("notice")
                elif status == "rejected":
                    e = r.get("error") or {}
                    move, notice = _MOVES[State.REJECTED], None
                    error = f"{e.get('code', 'rejected')}: {e.get('message', '')}".strip()
                else:
                    counts["skipped"] += 1
                    continue
                seq, state = states.pop(pid, (0, ""))  # popped: a payment listed twice moves once
                if state != State.APPROVED:  # unknown here, or already settled
                    counts["skipped"] += 1
                    continue
                events.append(_event_row(seq, pid, move, state, now, actor, (None, None, notice, error, done[status])))
                if move.final:
                    settled.append((seq,))
                counts[str(status)] += 1
            c.executemany(_EVENT_SQL, events)
            c.executemany("DELETE FROM open WHERE seq = ?", settled)
        return counts

    def note_upload_failure(self, payment_ids: Sequence[str], error: str) -> None:
        with self._tx() as c:
            c.executemany(
                "UPDATE open SET attempts = attempts + 1, last_error = ?"
                " WHERE seq = (SELECT seq FROM payment WHERE payment_id = ?)"
                f" AND {_latest_state('open')} = 'approved'",
                [(error[:500], pid) for pid in payment_ids],
            )

    def upload_failures(self, payment_id: str) -> int:
        """Failed uploads of a payment while it waits in the outbox."""
        with self._reading():
            row = self._conn.execute(
                "SELECT o.attempts FROM payment p JOIN open o ON o.seq = p.seq WHERE p.payment_id = ?", (payment_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- reading ---------------------------------------------------------------------------------

    def get(self, payment_id: str) -> Payment:
        rows = self._load([payment_id])
        if not rows:
            raise KeyError(payment_id)
        return rows[0]

    def find(self, key: str) -> Payment:
        """A payment by id, id prefix (8+ chars) or receipt number; KeyError if none or ambiguous."""
        with self._reading():
            ids = self._conn.execute(
                "SELECT payment_id FROM payment WHERE payment_id = ? OR receipt_number = ? OR"
                " (length(?) >= 8 AND payment_id LIKE ? || '%') LIMIT 2",
                (key, key, key, key),
            ).fetchall()
        if len(ids) != 1:
            raise KeyError(key)
        return self.get(ids[0][0])

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
            wanted = [str(s) for s in states]
            if not set(wanted) & {s.value for s in FINAL}:
                # only open states: the small `open` table finds them without reading the history
                where.append(
                    f"payment_id IN (SELECT payment_id FROM unsettled WHERE state IN ({','.join('?' * len(wanted))}))"
                )
            else:
                where.append(f"state IN ({','.join('?' * len(wanted))})")
            params += wanted
        if since:
            where.append("created_at >= ?")
            params.append(since)
        if bill_reference:
            where.append("bill_reference = ?")
            params.append(bill_reference)
        sql = "SELECT payment_id FROM payments"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, receipt_number DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._rows(sql, params)

    def transaction(self, transaction_id: str) -> builtins.list[Payment]:
        return self._rows(
            "SELECT payment_id FROM payment WHERE transaction_id = ? ORDER BY receipt_number", (transaction_id,)
        )

    def unknown(self) -> builtins.list[Payment]:
        return self._rows(
            "SELECT payment_id FROM payment"
            " WHERE payment_id IN (SELECT payment_id FROM unsettled WHERE state = 'unknown') ORDER BY created_at"
        )

    def blocking_payment(self, bill_reference: str) -> Payment | None:
        """An `authorizing` or `unknown` payment for that bill: no new payment for it may start."""
        with self._reading():
            row = self._conn.execute(
                f"SELECT p.payment_id FROM payment p JOIN event e ON e.event_id = {_latest('p')}"
                " WHERE p.bill_reference = ? AND e.state IN ('authorizing', 'unknown') ORDER BY p.created_at LIMIT 1",
                (bill_reference,),
            ).fetchone()
        return self.get(row[0]) if row else None

    def outbox_batch(self, limit: int) -> builtins.list[Payment]:
        """The oldest approved payments waiting for upload."""
        with self._reading():
            ids = [
                r[0]
                for r in self._conn.execute(
                    "SELECT payment_id FROM unsettled WHERE state = 'approved' ORDER BY seq LIMIT ?",
                    (limit,),
                )
            ]
        return self._load(ids)

    def pending_against(self, bill_reference: str, fetched_at: str | None) -> int:
        """Minor units paid here on a bill that a bill snapshot taken at `fetched_at` does not show yet:
        unsent or in-doubt payments, and those uploaded after the snapshot was taken."""
        with self._reading():
            row = self._conn.execute(
                f"SELECT COALESCE(SUM(p.amount), 0) FROM payment p JOIN event e ON e.event_id = {_latest('p')}"
                " WHERE p.bill_reference = ? AND (e.state IN ('approved', 'unknown', 'authorizing')"
                "  OR (e.state = 'uploaded' AND ? IS NOT NULL AND e.at > ?))",
                (bill_reference, fetched_at, fetched_at),
            ).fetchone()
        return int(row[0])

    def queue_stats(self) -> QueueStats:
        stats = QueueStats()
        with self._reading():
            rows = self._conn.execute(
                "SELECT u.state, p.currency, COUNT(*), SUM(p.amount), MIN(p.captured_at)"
                " FROM unsettled u JOIN payment p USING (payment_id) GROUP BY u.state, p.currency"
            ).fetchall()
            noticed = self._conn.execute(
                "SELECT COUNT(DISTINCT payment_id) FROM event WHERE notice IS NOT NULL"
            ).fetchone()[0]
        for state, cur, n, total, oldest in rows:
            if state == State.APPROVED:
                stats.count += n
                stats.total[cur] = stats.total.get(cur, 0) + total
                when = datetime.fromisoformat(oldest)
                if stats.oldest_captured_at is None or when < stats.oldest_captured_at:
                    stats.oldest_captured_at = when
            elif state in (State.AUTHORIZING, State.UNKNOWN):
                stats.in_doubt_count += n
                stats.in_doubt_total[cur] = stats.in_doubt_total.get(cur, 0) + total
                if state == State.UNKNOWN:
                    stats.unknown += n
            if state in (State.UNKNOWN, State.REJECTED):
                stats.needs_attention += n
        stats.needs_attention += noticed
        return stats

    def audit(self, payment_id: str) -> builtins.list[dict[str, Any]]:
        with self._reading():
            rows = self._conn.execute(
                "SELECT e.at, e.from_state, e.state AS to_state, e.actor, e.detail"
                " FROM payment p JOIN event e ON e.event_id BETWEEN p.seq * 8 AND p.seq * 8 + 7"
                " WHERE p.payment_id = ? ORDER BY e.event_id",
                (payment_id,),
            ).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"]) if r["detail"] else None} for r in rows]

    def integrity_check(self) -> str:
        with self._lock:
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

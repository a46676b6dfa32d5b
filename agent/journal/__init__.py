"""The payment journal: every payment and every state change, crash-safe, in one SQLite file.

    journal = Journal.open("/var/lib/guichet", terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    [p] = journal.create([NewPayment(bill, 345600)], currency="DZD", method="cash", cashier_id="c0042",
                         captured_offline=False)
    journal.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
    journal.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={...})

WAL mode with synchronous=FULL: a transaction that returned is on disk. Each state change is one
transaction writing one event row, which is both the payment's history and its audit trail (the outbox is
a view of the approved payments, not a row of its own); a crash between any two steps leaves the journal
in the state before or after that step, never between.

The package: `schema` (the file's name, its frozen migrations, the SQL of a transition), `model` (Payment,
NewPayment, QueueStats), `marks` (the high-water mark and the parked outcomes beside the file) and, here,
the Journal. Every name importers use is importable from `agent.journal`. The times it stores are
agent.clock's one form (UTC, `clock.now_stamp`; migration 5 rewrote older journals); a time given to it
(`list(since=)`, `pending_against`, `NewPayment.seen_at`) must carry its offset (agent.clock.instant) and is
turned into that form first, never compared as text as it came.

No double charge, whoever calls: `create` refuses (BillBlocked, one line naming the bill), inside its write
transaction (BEGIN IMMEDIATE, so two processes cannot both pass), a payment for a bill that has one in
progress or with an unknown outcome, or one taken on it since it was read: committed after the read that
gave `NewPayment.seen_seq` (`read_bill`: the amount pending and the receipt counter in one read), or created
since `NewPayment.seen_at`. A basket naming one bill twice is refused too.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import orjson
import sqlite_utils

from agent import clock
from agent.clock import now_precise, now_rfc3339, now_stamp
from agent.crashpoints import ARMED, crashpoint
from agent.errors import (
    BillBlocked,
    GuichetError,
    InvalidAmount,
    InvalidTransition,
    JournalDamaged,
    JournalError,
    StorageError,
)
from agent.journal.marks import (
    HWM_NAME,
    PENDING_NAME,
    HighWater,
    MarkReading,
    PendingOutcomes,
    compare_high_water,
    read_high_water,
    read_pending,
)
from agent.journal.model import (
    CARD_KEYS,
    NEVER_STORED_TAGS,
    SETTLED_CARD_KEYS,
    NewPayment,
    Payment,
    QueueStats,
    chip_fault,
    uuid7,
)
from agent.journal.schema import (
    DB_NAME,
    EVENT_SQL,
    FINAL,
    MIGRATIONS,
    MOVES,
    SLOTS,
    SOURCES,
    STATE_SQL,
    STEP,
    Move,
    event_row,
    latest_event,
    latest_state,
)
from agent.locks import CounterLock, UploadLock
from agent.states import State
from agent.storage import describe_sqlite_error, ensure_state_dir, open_database

__all__ = [
    "CARD_KEYS",
    "DB_NAME",
    "FINAL",
    "HWM_NAME",
    "MIGRATIONS",
    "NEVER_STORED_TAGS",
    "PENDING_NAME",
    "SETTLED_CARD_KEYS",
    "SLOTS",
    "SOURCES",
    "STEP",
    "HighWater",
    "Journal",
    "MarkReading",
    "NewPayment",
    "Payment",
    "PendingOutcomes",
    "QueueStats",
    "REVERSAL_OUTCOMES",
    "chip_fault",
    "compare_high_water",
    "now_precise",
    "now_rfc3339",
    "now_stamp",
    "open_database",
    "read_high_water",
    "read_pending",
    "uuid7",
]

MAX_BASKET = 10  # bills in one payment transaction (one authorisation for the total)
log = logging.getLogger("guichet.journal")
_FEW = 64  # payments of one bill read through its index by create's double-charge check (else from `open`)
RECENT = 256  # payments whose latest copy a journal keeps in memory (a basket holds at most a few)
REVERSAL_REASONS = ("card_declined_after_approval", "card_removed", "cancelled", "timeout")  # contract 1.1
# reversed: the server acknowledged; no_approval: it holds none (404); settled: no payment left unknown
REVERSAL_OUTCOMES = ("reversed", "no_approval", "settled")


def _stamp_duty(value: Any, amount: int, method: str) -> int | None:
    """A NewPayment's stamp duty, checked: None, or an integer of minor units above 0, on cash only (contract
    1.1), and never more than the amount it is levied on (a sanity bound: a real duty is a small part of
    it). 0 is no duty: None, so that no `"stamp_duty": 0` is ever uploaded (a card payment has none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**63 - 1:
        raise InvalidAmount(f"stamp_duty: {str(value)[:40]!r} must be a whole number of minor units, 0 or more")
    if not value:
        return None
    if method != "cash":
        raise InvalidAmount(f"stamp_duty: only on a cash payment, not {method}")
    if isinstance(amount, int) and value > amount:
        raise InvalidAmount(f"stamp_duty: {value} is more than the {amount} paid on the bill; check the duty rule")
    return value


def _json(value: Any) -> str:
    """A journal column's JSON text, UTF-8 kept as is. orjson: the stdlib's json builds an encoder on every
    call, which the capture path pays twice (card, authorization)."""
    return orjson.dumps(value).decode()


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
        # Not upgraded under a running agent of the previous version (it would go on writing the old way).
        busy = (CounterLock.filename, UploadLock.filename)
        journal = cls(open_database(path, MIGRATIONS, busy_locks=busy), path, terminal_id, agency_id)
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
                        (now_stamp(), kind, message, counter, expected),
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
                (now_stamp(), supervisor[:64]),
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
        Refuses with BillBlocked (nothing written) a bill that has a payment in progress (`created`,
        `authorizing`) or with an unknown outcome, or a payment taken on it since the item's read: committed
        after the `read_bill` that gave `seen_seq` or, without it, created since `seen_at`: checked under the
        write lock, so of two processes racing for one bill at most one gets through. InvalidAmount for one
        bill twice among the items, or a stamp duty that is not a non-negative integer, is on a card payment,
        or exceeds its amount; GuichetError for a `seen_at` without its offset.

            pending, seq = journal.read_bill(ref, fetched_at)      # the amount due read here, then:
            journal.create([NewPayment(bill, due - pending, seen_seq=seq)], currency="DZD", method="cash", ...)
        """
        if not items:
            raise ValueError("no bill to pay")
        if len(items) > MAX_BASKET:  # whoever calls: the flow says it first, in the cashier's words
            raise InvalidAmount(f"a basket holds at most {MAX_BASKET} bills ({len(items)} given)")
        refs = [str(item.bill["reference"]) for item in items]
        if len(set(refs)) != len(refs):
            twice = next(r for r in refs if refs.count(r) > 1)
            raise InvalidAmount(f"bill {twice}: in the basket twice; one payment per bill")
        duties = [_stamp_duty(item.stamp_duty, item.amount, method) for item in items]
        try:
            seen = [None if item.seen_at is None else clock.instant(item.seen_at) for item in items]
        except ValueError as e:
            raise GuichetError(f"seen_at: {e}") from None
        for item in items:
            s = item.seen_seq
            if s is not None and (isinstance(s, bool) or not isinstance(s, int) or s < 0):
                raise GuichetError(f"seen_seq: {str(s)[:40]!r} must be a receipt sequence, 0 or more")
        ids = [uuid7() for _ in items]
        transaction_id = ids[0]
        with self._tx("journal.create") as c:
            # Stamped under the write lock: a payment committed after another caller's read carries a later
            # time than that read (the seen_at test; seen_seq does not depend on clocks at all).
            now = now_stamp()
            captured_at = now
            # Inside the write transaction: a loss another connection or process recorded (or accepted) is
            # seen here, and none can be recorded between this check and the payment's commit.
            self._refresh_loss()
            if self.damage is not None:
                raise JournalDamaged(self.damage)
            for ref, item, since in zip(refs, items, seen, strict=True):
                self._refuse_double_charge(c, ref, since, item.seen_seq)
            for pid, item, duty in zip(ids, items, duties, strict=True):
                seq = c.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'receipt' RETURNING value"
                ).fetchone()[0]
                c.execute(
                    "INSERT INTO payment (payment_id, transaction_id, bill_reference, amount, currency, method,"
                    " agency_id, terminal_id, cashier_id, receipt_number, captured_at, captured_offline, bill,"
                    " created_at, seq, stamp_duty) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
                        duty,
                    ),
                )
                c.execute(
                    EVENT_SQL,
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

    @staticmethod
    def _refuse_double_charge(c: sqlite3.Connection, reference: str, since: str | None, after: int | None) -> None:
        """Inside create's write transaction: BillBlocked if `reference` has a payment in progress or in
        doubt, or one taken (neither declined nor cancelled) since the amount was read: with a receipt
        sequence above `after` (committed after that read) or, without `after`, created at or after `since`
        (the stored form)."""
        # A bill has a few payments, so they are read from its index; a bill with many (a benchmark's, or a
        # standing order's) is checked from `open` instead, the unsettled payments (a backlog the offline
        # limits bound), a state probe per row and the bill read only for those in progress or in doubt.
        few = c.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM payment WHERE bill_reference = ? LIMIT ?)", (reference, _FEW)
        ).fetchone()[0] < _FEW
        if few:
            sql = (
                f"SELECT p.receipt_number, e.state FROM payment p JOIN event e ON e.event_id = {latest_event('p')}"
                " WHERE p.bill_reference = ? AND e.state IN ('created', 'authorizing', 'unknown') LIMIT 1"
            )
        else:  # CROSS JOIN: SQLite keeps this order (open, its latest event, then the payment)
            sql = (
                f"SELECT p.receipt_number, e.state FROM open o CROSS JOIN event e ON e.event_id = {latest_event('o')}"
                " CROSS JOIN payment p ON p.seq = o.seq"
                " WHERE e.state IN ('created', 'authorizing', 'unknown') AND p.bill_reference = ? LIMIT 1"
            )
        row = c.execute(sql, (reference,)).fetchone()
        if row is not None:
            why = "has an unknown outcome; settle it first" if row[1] == State.UNKNOWN else "is in progress"
            raise BillBlocked(f"bill {reference}: payment {row[0]} {why}")
        bound: int | str
        if after is not None:
            # Commit order, read in the same transaction as the amount (read_bill): whatever the clocks say. One
            # range seek in payment_bill (bill_reference, seq) (migration 7). seen_at is then not needed.
            where, bound = "p.seq > ?", after
        elif since is not None:
            where, bound = "p.created_at >= ?", since  # the wall clock: what a caller without seen_seq has
        else:
            return
        row = c.execute(
            f"SELECT p.receipt_number FROM payment p JOIN event e ON e.event_id = {latest_event('p')}"
            f" WHERE p.bill_reference = ? AND {where} AND e.state NOT IN ('declined', 'cancelled') LIMIT 1",
            (reference, bound),
        ).fetchone()
        if row is not None:
            raise BillBlocked(
                f"bill {reference}: payment {row[0]} was taken on it since its amount was read; look it up again"
            )

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
        chip: dict[str, Any] | None = None,
        reversal: str | None = None,
    ) -> builtins.list[Payment]:
        """Move payments to `to` in one transaction: one event each; a payment settled for good leaves `open`.

        `chip` (card_reader): the chip data, stored on each payment that has none yet (checked: GuichetError
        naming the tag for a card number, track or PIN data). `reversal` (a contract reason): the transaction's
        approval is queued for reversal (agent.reversals), in the same transaction.

        Raises InvalidTransition, leaving everything as it was, if any payment may not make that move.
        """
        ids = (payment_ids,) if isinstance(payment_ids, str) else tuple(payment_ids)
        move = MOVES.get(to) or MOVES[State(to)]  # State() names a bad value
        extra: tuple[str | None, str | None] | None = None
        if chip is not None or reversal is not None:
            fault = None if chip is None else chip_fault(chip)
            if fault is not None:
                raise GuichetError(fault)
            if reversal is not None and reversal not in REVERSAL_REASONS:
                raise GuichetError(f"reversal: {str(reversal)[:40]!r} is not one of {', '.join(REVERSAL_REASONS)}")
            extra = (None if chip is None else _json(chip), reversal)
        now = now_stamp()
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
                extra is None
                and len(ids) == 1
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
                    if extra is not None:
                        self._append_chip(c, seq, now, *extra)
                        fresh = False  # read back: the chip column is written once, maybe before
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

    def _append_alone(self, held: Payment, move: Move, now: str, actor: str, event: tuple[Any, ...]) -> bool:
        """The capture path, under self._lock: one payment whose state we hold, to a state that keeps it open.
        Its event is one INSERT, a transaction of its own: one WAL page, one sync. The trigger
        event_follows_latest refuses it if `held` is no longer the payment's latest state (another process
        moved it): then nothing is written, and False sends the caller to read the state instead."""
        try:
            if ARMED:
                crashpoint(move.point + ".before_commit")
            self._conn.execute(
                EVENT_SQL, event_row(held.seq, held.payment_id, move, held.state, now, actor, event)
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
        row = c.execute(STATE_SQL, (pid,)).fetchone()
        if row is None:
            raise InvalidTransition(f"payment {pid}: not in the journal")
        return row[0], row[1]

    @staticmethod
    def _append(
        c: sqlite3.Connection, seq: int, pid: str, move: Move, current: str, now: str, actor: str,
        event: tuple[Any, ...],
    ) -> None:
        """Write the event of `pid`'s move from `current` (checked by the caller); a payment settled for good
        leaves `open`."""
        c.execute(EVENT_SQL, event_row(seq, pid, move, current, now, actor, event))
        if move.final:
            c.execute("DELETE FROM open WHERE seq = ?", (seq,))

    @staticmethod
    def _append_chip(c: sqlite3.Connection, seq: int, now: str, chip: str | None, reversal: str | None) -> None:
        """With a transition: the payment's chip data (kept once), the transaction's reversal to send."""
        if chip is not None:
            c.execute("UPDATE payment SET chip = ? WHERE seq = ? AND chip IS NULL", (chip, seq))
        if reversal is not None:
            c.execute(
                "INSERT OR IGNORE INTO reversal (transaction_id, reason, queued_at)"
                " SELECT transaction_id, ?, ? FROM payment WHERE seq = ?",
                (reversal, now, seq),
            )

    # -- reversals (contract 1.1): approvals the card did not complete, sent until acknowledged ------------

    def reversals_waiting(self, limit: int = 16) -> builtins.list[dict[str, Any]]:
        """The reversals not yet acknowledged, oldest first: {transaction_id, reason, queued_at, attempts,
        last_error, payment_ids, states} (the transaction's payments and their states now)."""
        with self._reading():
            rows = [dict(r) for r in self._conn.execute(
                "SELECT transaction_id, reason, queued_at, attempts, last_error FROM reversal"
                " WHERE done_at IS NULL ORDER BY queued_at LIMIT ?", (int(limit),))]
            for r in rows:
                found = self._conn.execute(
                    f"SELECT p.payment_id, {latest_state('p')} FROM payment p WHERE p.transaction_id = ?"
                    " ORDER BY p.seq", (r["transaction_id"],)).fetchall()
                r["payment_ids"] = [f[0] for f in found]
                r["states"] = [f[1] for f in found]
        return rows

    def note_reversal_failure(self, transaction_id: str, error: str) -> None:
        """A reversal sent without an acknowledgement: counted, its last error kept (the queue shows both)."""
        with self._tx("journal.reversal_failure") as c:
            c.execute("UPDATE reversal SET attempts = attempts + 1, last_error = ? WHERE transaction_id = ?"
                      " AND done_at IS NULL", (error[:500], transaction_id))

    def finish_reversal(self, transaction_id: str, outcome: str, *, actor: str = "reversal",
                        message: str = "") -> builtins.list[Payment]:
        """In one transaction: the reversal leaves the queue (`outcome`: reversed, no_approval, settled) and the
        transaction's payments still `unknown` become `declined` (the approval is undone or never was).
        Returns the payments it declined; a reversal already finished changes nothing."""
        if outcome not in REVERSAL_OUTCOMES:
            raise GuichetError(f"reversal outcome: {outcome[:40]!r} is not one of {', '.join(REVERSAL_OUTCOMES)}")
        move = MOVES[State.DECLINED]
        ids: builtins.list[str] = []
        with self._lock:
            c = self._begin()
            try:
                now = now_stamp()
                done = c.execute("UPDATE reversal SET done_at = ?, outcome = ? WHERE transaction_id = ?"
                                 " AND done_at IS NULL", (now, outcome, transaction_id)).rowcount
                if done and outcome != "settled":
                    rows = c.execute(f"SELECT p.seq, p.payment_id, {latest_state('p')} FROM payment p"
                                     " WHERE p.transaction_id = ? ORDER BY p.seq", (transaction_id,)).fetchall()
                    why = message or ("the approval was reversed" if outcome == "reversed" else
                                      "the server holds no approval")
                    detail = _json({"reversal": outcome})
                    for seq, pid, state in rows:
                        if state == State.UNKNOWN:
                            self._append(c, seq, pid, move, state, now, actor, (None, None, None, why, detail))
                            ids.append(pid)
                self._commit("journal.reversal")
            except BaseException as e:
                self._abort(e)
            for pid in ids:
                self._recent.pop(pid, None)
        return self._remember(self._load(ids))

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
        chip: dict[str, Any] | None = None,
        reversal: str | None = None,
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
            "at": now_stamp(),
        }
        if chip is not None or reversal is not None:  # only then: an older version replays the record as it was
            record["chip"], record["reversal"] = chip, reversal
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
                        chip=r.get("chip"),
                        reversal=r.get("reversal"),
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
                "SELECT u.payment_id, u.state, p.method FROM unsettled u JOIN payment p ON p.payment_id = u.payment_id"
                " WHERE u.state IN ('authorizing', 'created') ORDER BY u.seq"
            ).fetchall()
        for pid, state, method in rows:
            to = State.UNKNOWN if state == State.AUTHORIZING else State.CANCELLED
            # A card_reader payment cut before the card's last word never completed on the card: whatever the
            # acquirer approved is reversed (a 404 after the grace means it never got there), never kept on the
            # acquirer's record alone (docs/emv.md). A TPE holds its own outcome: settled from its ticket.
            reversal = "timeout" if to == State.UNKNOWN and method == "card_reader" else None
            changed += self.transition(pid, to, actor=actor, detail={"reason": "agent restarted during this step"},
                                       reversal=reversal)
        return changed

    def record_upload_results(self, results: Sequence[dict[str, Any]], actor: str = "sync") -> dict[str, int]:
        """Apply one batch's results in one transaction: accepted/duplicate -> uploaded, rejected -> rejected.

        Only payments still `approved` move: a replayed answer changes nothing.
        """
        counts = {"accepted": 0, "duplicate": 0, "rejected": 0, "skipped": 0}
        now = now_stamp()
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
                        f"SELECT p.payment_id, p.seq, {latest_state('p')} FROM payment p"
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
                    move, error, notice = MOVES[State.UPLOADED], None, r.get("notice")
                elif status == "rejected":
                    e = r.get("error") or {}
                    move, notice = MOVES[State.REJECTED], None
                    error = f"{e.get('code', 'rejected')}: {e.get('message', '')}".strip()
                else:
                    counts["skipped"] += 1
                    continue
                seq, state = states.pop(pid, (0, ""))  # popped: a payment listed twice moves once
                if state != State.APPROVED:  # unknown here, or already settled
                    counts["skipped"] += 1
                    continue
                events.append(event_row(seq, pid, move, state, now, actor, (None, None, notice, error, done[status])))
                if move.final:
                    settled.append((seq,))
                counts[str(status)] += 1
            c.executemany(EVENT_SQL, events)
            c.executemany("DELETE FROM open WHERE seq = ?", settled)
        return counts

    def note_upload_failure(self, payment_ids: Sequence[str], error: str) -> None:
        with self._tx() as c:
            c.executemany(
                "UPDATE open SET attempts = attempts + 1, last_error = ?"
                " WHERE seq = (SELECT seq FROM payment WHERE payment_id = ?)"
                f" AND {latest_state('open')} = 'approved'",
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
        since: str | datetime | None = None,
        bill_reference: str | None = None,
    ) -> builtins.list[Payment]:
        """Payments, newest first; `since`: created at or after that instant (an RFC 3339 time with its offset
        or an aware datetime; ValueError if it is neither, or naive)."""
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
            params.append(clock.instant(since))
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
                f"SELECT p.payment_id FROM payment p JOIN event e ON e.event_id = {latest_event('p')}"
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

    def pending_against(self, bill_reference: str, fetched_at: str | datetime | None) -> int:
        """Minor units paid here on a bill that a bill snapshot taken at `fetched_at` does not show yet:
        unsent or in-doubt payments, and those uploaded after the snapshot was taken. `fetched_at` is an
        RFC 3339 time with its offset (or an aware datetime), compared as an instant; one that is not such a
        time (naive too) counts every uploaded payment too (at worst less is shown due, never more)."""
        return self.read_bill(bill_reference, fetched_at)[0]

    def read_bill(self, bill_reference: str, fetched_at: str | datetime | None) -> tuple[int, int]:
        """`pending_against` and the receipt counter, read in one statement (one snapshot): the counter is
        what `NewPayment.seen_seq` takes, so that `create` refuses a payment taken on the bill after this
        read, by commit order.

            pending, seq = journal.read_bill(bill.reference, bill.fetched_at)
            NewPayment(bill.to_api(), bill.amount_due - pending, seen_seq=seq)
        """
        if fetched_at is not None:
            try:
                fetched_at = clock.instant(fetched_at)
            except ValueError:
                log.warning("bill %s: snapshot time %r is not a time with its offset; counting every payment",
                            bill_reference, str(fetched_at)[:40])
                fetched_at = ""
        with self._reading():
            # A payment still `created` is not counted in the amount (nothing was asked for yet): the bound
            # goes below it, so that if it is taken after all, the payment built on this read is refused.
            row = self._conn.execute(
                "SELECT COALESCE(SUM(CASE WHEN e.state IN ('approved', 'unknown', 'authorizing')"
                "  OR (e.state = 'uploaded' AND ? IS NOT NULL AND e.at > ?) THEN p.amount END), 0),"
                " MIN((SELECT value FROM counters WHERE name = 'receipt'),"
                "     COALESCE(MIN(CASE WHEN e.state = 'created' THEN p.seq - 1 END), 1 << 62))"
                f" FROM payment p JOIN event e ON e.event_id = {latest_event('p')} WHERE p.bill_reference = ?",
                (fetched_at, fetched_at, bill_reference),
            ).fetchone()
        return int(row[0]), int(row[1])

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
                when = clock.parse(oldest)
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

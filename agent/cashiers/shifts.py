"""Shifts and the Z report: a cashier's shift opened at login, closed with the totals the journal shows.

    shift = store.open_shift("c0042")                       # the open one again after a restart mid-shift
    report = store.close_shift(shift.shift_id, journal, closed_by="c0042", terminal_id="ORAN-07-G2")
    report.by_method["cash"].amounts["DZD"]                 # minor units
    z_report(journal.list(), terminal_id="ORAN-07-G2", since=start, until=end)   # any period

The drawer (its own versioned schema, DRAWER_MIGRATIONS, in the same file):

    store.open_float(shift.shift_id, 1_000_000, "DZD", by="c0042")     # 10 000,00 DA at shift start
    store.expected_cash(shift.shift_id, journal)                       # float + cash taken + stamp duty
    store.count_drawer(shift.shift_id, {200000: 12, 100000: 3}, journal, counted_by="c0042",
                       accepted_by=supervisor, denominations=[200000, 100000])
    # a difference needs another person, a supervisor verified by PIN (accounts.verify_supervisor):
    # DrawerDifference otherwise. A count made before more cash was taken is stale: close_shift refuses it.

A shift's report and its drawer hold the shift's cashier's payments only: two cashiers with open shifts on one
terminal (F10 logs out without closing) each see their own cash.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from agent import clock
from agent.cashiers.accounts import Cashier
from agent.cashiers.db import CashierError, CashierFile
from agent.errors import GuichetError
from agent.states import TAKEN, needs_attention

# Money was taken for these states (uploaded or not, accepted or needing attention).
TAKEN_STATES = TAKEN  # kept for importers of agent.cashiers


class ShiftError(CashierError):
    """Opening a second shift, closing a closed one, and the like."""


class StaleCount(ShiftError):
    """The drawer was counted, then cash was taken (or taken back): it must be counted again."""


class DrawerDifference(ShiftError):
    """The counted drawer differs from what it should hold and no supervisor accepted it yet."""

    def __init__(self, message: str, expected: int, counted: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.counted = counted
        self.difference = counted - expected


@dataclass(frozen=True)
class Shift:
    shift_id: int
    cashier_id: str
    opened_at: str
    closed_at: str | None
    closed_by: str | None
    z_report: dict[str, Any] | None


# A drawer never holds more than this (minor units): a typing slip, not cash.
MAX_DRAWER = 10**12


@dataclass(frozen=True)
class Drawer:
    """A shift's drawer: the opening float, then the count by denomination at close (minor units)."""

    shift_id: int
    currency: str
    opening_float: int
    opened_by: str
    opened_at: str
    counts: dict[int, int] | None = None
    counted: int | None = None
    expected: int | None = None
    difference: int | None = None  # counted - expected: + over, - short
    counted_by: str | None = None
    accepted_by: str | None = None  # the supervisor who accepted a difference
    counted_at: str | None = None


# The drawer's own schema, append only, applied by Shifts on open (its version in drawer_schema).
DRAWER_MIGRATIONS = [
    (
        1,
        """CREATE TABLE IF NOT EXISTS drawers (
            shift_id INTEGER PRIMARY KEY REFERENCES shifts(shift_id),
            currency TEXT NOT NULL,
            opening_float INTEGER NOT NULL CHECK (opening_float >= 0),
            opened_by TEXT NOT NULL,
            opened_at TEXT NOT NULL,
            counts TEXT,
            counted INTEGER,
            expected INTEGER,
            difference INTEGER,
            counted_by TEXT,
            accepted_by TEXT,
            counted_at TEXT
        )""",
    )
]


@dataclass
class Totals:
    """A count and the total per currency (minor units)."""

    count: int = 0
    amounts: dict[str, int] = field(default_factory=dict)

    def add(self, amount: int, currency: str) -> None:
        self.count += 1
        self.amounts[currency] = self.amounts.get(currency, 0) + amount


@dataclass
class ZReport:
    """The end-of-shift report: what was taken, how, by whom, and what still needs attention."""

    terminal_id: str
    since: str
    until: str
    total: Totals = field(default_factory=Totals)
    by_method: dict[str, Totals] = field(default_factory=dict)
    by_cashier: dict[str, Totals] = field(default_factory=dict)
    online: Totals = field(default_factory=Totals)
    offline: Totals = field(default_factory=Totals)
    declined: int = 0
    cancelled: int = 0
    unsent: Totals = field(default_factory=Totals)
    needs_attention: list[dict[str, Any]] = field(default_factory=list)
    # Cash stamp duty collected on top of the amounts, per currency: totalled apart (it is the state's).
    stamp_duty: dict[str, int] = field(default_factory=dict)
    drawer: dict[str, Any] | None = None  # the count at shift close, when one was made

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PaymentLike(Protocol):
    # Read-only members: the journal's Payment is a frozen dataclass.
    @property
    def payment_id(self) -> str: ...
    @property
    def bill_reference(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def cashier_id(self) -> str: ...
    @property
    def captured_at(self) -> str: ...
    @property
    def captured_offline(self) -> bool: ...
    @property
    def notice(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def receipt_number(self) -> str: ...


class _JournalLike(Protocol):
    def list(self, states: Any = None, limit: Any = None, since: Any = None) -> Any: ...


def _state(p: Any) -> str:
    s = p.state
    return str(getattr(s, "value", s))


def z_report(
    payments: Iterable[_PaymentLike], *, terminal_id: str, since: datetime, until: datetime
) -> ZReport:
    """Totals of the payments captured in [since, until]: per method, per cashier, online vs offline.

    Amounts count only when money was taken (approved, uploaded, or rejected by the server and needing
    attention: the card was still charged). Unknown outcomes, rejected uploads and credited-to-account
    notices are listed under needs_attention.
    """
    rep = ZReport(terminal_id=terminal_id, since=clock.stamp(since), until=clock.stamp(until))
    for p in payments:
        at = clock.parse(p.captured_at)
        if at < since or at > until:
            continue
        state = _state(p)
        if state in TAKEN_STATES:
            rep.total.add(p.amount, p.currency)
            rep.by_method.setdefault(p.method, Totals()).add(p.amount, p.currency)
            rep.by_cashier.setdefault(p.cashier_id, Totals()).add(p.amount, p.currency)
            duty = int(getattr(p, "stamp_duty", 0) or 0)
            if duty:
                rep.stamp_duty[p.currency] = rep.stamp_duty.get(p.currency, 0) + duty
            (rep.offline if p.captured_offline else rep.online).add(p.amount, p.currency)
            if state == "approved":
                rep.unsent.add(p.amount, p.currency)
        elif state == "declined":
            rep.declined += 1
        elif state == "cancelled":
            rep.cancelled += 1
        if needs_attention(state, p.notice):
            rep.needs_attention.append(
                {
                    "payment_id": p.payment_id,
                    "bill_reference": p.bill_reference,
                    "receipt_number": p.receipt_number,
                    "amount": p.amount,
                    "currency": p.currency,
                    "state": state,
                    "notice": p.notice,
                    "error": p.error,
                }
            )
    return rep


class Shifts(CashierFile):
    """The shifts of the cashier file, and their Z reports. Thread-safe, as CashierFile."""

    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._migrate_drawer()

    def _migrate_drawer(self) -> None:
        """The drawer's tables, versioned on their own (drawer_schema.version), one transaction per step."""
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS drawer_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM drawer_schema").fetchone()
            current = row[0] if row else 0
            if row is None:
                db.execute("INSERT INTO drawer_schema (version) VALUES (0)")
            if current > DRAWER_MIGRATIONS[-1][0]:
                raise CashierError(
                    f"{self.path}: the drawer tables are version {current}, newer than this program knows"
                    f" ({DRAWER_MIGRATIONS[-1][0]}); upgrade guichet"
                )
            for version, sql in DRAWER_MIGRATIONS:
                if version > current:
                    for statement in sql.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute("UPDATE drawer_schema SET version = ?", (version,))

    def open_shift(self, cashier_id: str, *, now: datetime | None = None) -> Shift:
        """Open the cashier's shift; returns the already open one if there is one (a restart mid-shift)."""
        current = self.current_shift(cashier_id)
        if current:
            return current
        self._require(cashier_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO shifts (cashier_id, opened_at) VALUES (?, ?)",
                (cashier_id, clock.stamp(now or clock.utc_now())),
            )
            shift_id = int(cur.lastrowid or 0)
            self._event(db, cashier_id, "shift_opened", cashier_id, str(shift_id))
        return self.shift(shift_id)

    def current_shift(self, cashier_id: str) -> Shift | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM shifts WHERE cashier_id = ? AND closed_at IS NULL", (cashier_id,)
            ).fetchone()
        return self._shift(row) if row else None

    def shift(self, shift_id: int) -> Shift:
        with self._lock:
            row = self._db.execute("SELECT * FROM shifts WHERE shift_id = ?", (shift_id,)).fetchone()
        if row is None:
            raise KeyError(shift_id)
        return self._shift(row)

    def shifts(self, limit: int = 50) -> builtins.list[Shift]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM shifts ORDER BY shift_id DESC LIMIT ?", (limit,)).fetchall()
        return [self._shift(r) for r in rows]

    @staticmethod
    def _shift(row: sqlite3.Row) -> Shift:
        return Shift(
            shift_id=row["shift_id"],
            cashier_id=row["cashier_id"],
            opened_at=row["opened_at"],
            closed_at=row["closed_at"],
            closed_by=row["closed_by"],
            z_report=json.loads(row["z_report"]) if row["z_report"] else None,
        )

    def shift_report(
        self, shift_id: int, journal: _JournalLike, *, terminal_id: str, now: datetime | None = None
    ) -> ZReport:
        """The Z report of a shift so far (or as closed), computed from the journal: the shift's cashier's
        payments only (another cashier's open shift on this terminal has its own report and drawer)."""
        sh = self.shift(shift_id)
        since = clock.parse(sh.opened_at)
        until = clock.parse(sh.closed_at) if sh.closed_at else (now or clock.utc_now())
        # The journal selects by creation time: a minute early (a payment created just before the login is
        # captured after it), filtered exactly on our side by capture instant.
        loose = since - timedelta(minutes=1)
        mine = (p for p in journal.list(since=loose) if p.cashier_id == sh.cashier_id)
        return z_report(mine, terminal_id=terminal_id, since=since, until=until)

    def close_shift(
        self,
        shift_id: int,
        journal: _JournalLike,
        *,
        closed_by: str,
        terminal_id: str,
        now: datetime | None = None,
    ) -> ZReport:
        """Close the shift and keep its Z report with it. StaleCount when the drawer was counted and the cash
        it should hold has changed since (a payment after the count): nothing is closed, count again."""
        sh = self.shift(shift_id)
        if sh.closed_at:
            raise ShiftError(f"shift {shift_id} was already closed at {sh.closed_at}")
        now = now or clock.utc_now()
        rep = self.shift_report(shift_id, journal, terminal_id=terminal_id, now=now)
        drawer = self.drawer(shift_id)
        if drawer is not None and drawer.counted is not None:
            expected = self._expected(drawer, rep)
            if expected != drawer.expected:
                raise StaleCount(
                    f"drawer: counted when it should have held {drawer.expected}, it should now hold {expected}"
                    " (cash taken since the count): count it again before closing the shift"
                )
        if drawer is not None:
            rep.drawer = asdict(drawer)
            rep.drawer["counts"] = {str(k): v for k, v in (drawer.counts or {}).items()} or None
        with self._tx() as db:
            n = db.execute(
                "UPDATE shifts SET closed_at = ?, closed_by = ?, z_report = ? "
                "WHERE shift_id = ? AND closed_at IS NULL",
                (clock.stamp(now), closed_by, json.dumps(rep.to_dict()), shift_id),
            ).rowcount
            if not n:
                raise ShiftError(f"shift {shift_id} was already closed")
            self._event(db, sh.cashier_id, "shift_closed", closed_by, str(shift_id))
        return rep

    # -- the drawer ------------------------------------------------------------------------------------

    def open_float(self, shift_id: int, amount: int, currency: str, *, by: str, now: datetime | None = None) -> Drawer:
        """The cash put in the drawer at shift start (minor units); once per shift."""
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_DRAWER:
            raise ShiftError(f"opening float: {amount!r} must be a whole number of minor units, 0 to {MAX_DRAWER}")
        sh = self.shift(shift_id)
        if sh.closed_at:
            raise ShiftError(f"shift {shift_id} is closed")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM drawers WHERE shift_id = ?", (shift_id,)).fetchone():
                raise ShiftError(f"shift {shift_id}: the opening float was already entered")
            db.execute(
                "INSERT INTO drawers (shift_id, currency, opening_float, opened_by, opened_at) VALUES (?,?,?,?,?)",
                (shift_id, currency, amount, by, clock.utc_text(now or clock.utc_now())),
            )
            self._event(db, sh.cashier_id, "drawer_opened", by, f"{shift_id}:{amount} {currency}")
        drawer = self.drawer(shift_id)
        assert drawer is not None
        return drawer

    def drawer(self, shift_id: int) -> Drawer | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM drawers WHERE shift_id = ?", (shift_id,)).fetchone()
        if row is None:
            return None
        return Drawer(
            shift_id=row["shift_id"],
            currency=row["currency"],
            opening_float=row["opening_float"],
            opened_by=row["opened_by"],
            opened_at=row["opened_at"],
            counts={int(k): v for k, v in json.loads(row["counts"]).items()} if row["counts"] else None,
            counted=row["counted"],
            expected=row["expected"],
            difference=row["difference"],
            counted_by=row["counted_by"],
            accepted_by=row["accepted_by"],
            counted_at=row["counted_at"],
        )

    def expected_cash(
        self, shift_id: int, journal: _JournalLike, *, terminal_id: str = "", now: datetime | None = None
    ) -> int:
        """What the drawer should hold: the opening float, plus the cash taken in the shift and its stamp
        duty (money taken: approved, uploaded, or rejected by the server). ShiftError without a float."""
        drawer = self.drawer(shift_id)
        if drawer is None:
            raise ShiftError(f"shift {shift_id}: no opening float was entered")
        return self._expected(drawer, self.shift_report(shift_id, journal, terminal_id=terminal_id, now=now))

    @staticmethod
    def _expected(drawer: Drawer, rep: ZReport) -> int:
        cash = rep.by_method.get("cash", Totals()).amounts.get(drawer.currency, 0)
        return drawer.opening_float + cash + rep.stamp_duty.get(drawer.currency, 0)

    def count_drawer(
        self,
        shift_id: int,
        counts: dict[int, int],
        journal: _JournalLike,
        *,
        counted_by: str,
        denominations: builtins.list[int],
        accepted_by: Cashier | None = None,
        terminal_id: str = "",
        now: datetime | None = None,
    ) -> Drawer:
        """Record the count by denomination ({minor units: pieces}) against what the drawer should hold.

        `denominations`: the notes and coins of the drawer's currency ([cash.denominations]); nothing else
        counts. A difference (either way) is recorded only with `accepted_by`, a supervisor whose PIN was
        verified (accounts.verify_supervisor), still active, and neither the shift's cashier nor the one who
        counted: otherwise DrawerDifference carries expected, counted and the difference, and nothing is
        written. Counting again before the shift closes replaces the count (the audit trail keeps each).
        """
        from agent.cash import check_count, count_total  # the one home of a count's rules

        sh = self.shift(shift_id)
        if sh.closed_at:
            raise ShiftError(f"shift {shift_id} is closed: its drawer was counted then")
        try:
            sheet = check_count(counts, denominations)
        except GuichetError as e:
            raise ShiftError(str(e)) from None
        counted = count_total(sheet)
        expected = self.expected_cash(shift_id, journal, terminal_id=terminal_id, now=now)
        difference = counted - expected
        if difference and accepted_by is None:
            raise DrawerDifference(
                f"drawer: counted {counted}, expected {expected}, difference {difference:+d}: a supervisor must"
                " accept it",
                expected,
                counted,
            )
        supervisor = accepted_by.cashier_id if accepted_by is not None else None
        with self._tx() as db:
            if supervisor is not None and difference:
                row = db.execute("SELECT role, active FROM cashiers WHERE cashier_id = ?", (supervisor,)).fetchone()
                if row is None or row["role"] != "supervisor" or not row["active"]:
                    raise ShiftError(f"drawer: {supervisor!r} is not an active supervisor: the difference stays open")
                if supervisor in (sh.cashier_id, counted_by):  # four eyes: never one's own drawer or count
                    raise ShiftError(f"drawer: {supervisor} cannot accept a difference in their own shift's drawer"
                                     " or their own count: another supervisor must")
            db.execute(
                "UPDATE drawers SET counts = ?, counted = ?, expected = ?, difference = ?, counted_by = ?,"
                " accepted_by = ?, counted_at = ? WHERE shift_id = ?",
                (json.dumps({str(k): v for k, v in sheet.items()}), counted, expected, difference, counted_by,
                 supervisor if difference else None, clock.utc_text(now or clock.utc_now()), shift_id),
            )
            detail = f"{shift_id}:counted {counted} expected {expected}" + (
                f" difference {difference:+d} accepted by {supervisor}" if difference else "")
            self._event(db, sh.cashier_id, "drawer_counted", counted_by, detail)
        drawer = self.drawer(shift_id)
        assert drawer is not None
        return drawer


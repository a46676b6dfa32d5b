"""Cashiers, PINs, shifts and the Z report, kept in their own SQLite file (`cashiers.db` in the state dir).

    store = CashierStore.open("/var/lib/guichet")
    store.add("c0042", "Amel B.", "4826", actor="s0001")       # PIN hashed with argon2id
    store.add("s0001", "Karim S.", "917355", role="supervisor")
    store.unlock("c0042", actor="s0001"); store.set_pin("c0042", "5931", actor="s0001")
    store.disable("c0042", actor="s0001")                      # can no longer log in; history kept
    store.events("c0042")                                      # who did what, when (the audit trail)
    cashier = store.verify("c0042", "4826")                     # LoginFailed / LockedOut
    shift = store.open_shift(cashier.cashier_id)
    ...
    report = store.close_shift(shift.shift_id, journal, closed_by="c0042")
    report.by_method["cash"].amounts["DZD"]                     # minor units

The file is separate from the payment journal so its schema evolves on its own; WAL, synchronous=FULL
and mode 0600 like the journal (PIN hashes are secrets, even when memory-hard).
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type

from agent.storage import create_private, ensure_state_dir

Role = Literal["cashier", "supervisor"]
ROLES = ("cashier", "supervisor")

MAX_ATTEMPTS = 5
LOCKOUT_SECONDS = 300
# New PINs: 4 to 8 digits (what a counter keypad and a cashier's memory handle). Older accounts with
# longer PINs still log in: verify() never checks the format.
PIN_MIN, PIN_MAX = 4, 8
_PIN = re.compile(rf"^\d{{{PIN_MIN},{PIN_MAX}}}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")

# Money was taken for these states (uploaded or not, accepted or needing attention).
TAKEN_STATES = ("approved", "uploaded", "rejected")


class CashierError(Exception):
    """A cashier operation refused; the message is one clear line."""


class LoginFailed(CashierError):
    """Unknown cashier or wrong PIN (the same message for both, so ids can't be probed)."""


class LockedOut(CashierError):
    """Too many wrong PINs: the account waits `until` (UTC) or a supervisor's unlock."""

    def __init__(self, cashier_id: str, until: datetime) -> None:
        super().__init__(f"cashier {cashier_id} is locked until {until.strftime('%H:%M:%S')} UTC")
        self.cashier_id = cashier_id
        self.until = until


class NotSupervisor(CashierError):
    """A supervisor action attempted with a cashier's credentials."""


class ShiftError(CashierError):
    """Opening a second shift, closing a closed one, and the like."""


@dataclass(frozen=True)
class Cashier:
    cashier_id: str
    name: str
    role: str
    failed_attempts: int
    locked_until: str | None
    active: bool

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"


@dataclass(frozen=True)
class Shift:
    shift_id: int
    cashier_id: str
    opened_at: str
    closed_at: str | None
    closed_by: str | None
    z_report: dict[str, Any] | None


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


def check_id(cashier_id: str) -> None:
    """Raise CashierError naming the field unless `cashier_id` is 1-32 letters, digits, '.', '_', '-'."""
    if not _ID.match(cashier_id):
        raise CashierError(f"cashier_id: {cashier_id!r} must be 1-32 letters, digits, '.', '_' or '-'")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def _parse(ts: str) -> datetime:
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


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
    rep = ZReport(terminal_id=terminal_id, since=_iso(since), until=_iso(until))
    for p in payments:
        at = _parse(p.captured_at)
        if at < since or at > until:
            continue
        state = _state(p)
        if state in TAKEN_STATES:
            rep.total.add(p.amount, p.currency)
            rep.by_method.setdefault(p.method, Totals()).add(p.amount, p.currency)
            rep.by_cashier.setdefault(p.cashier_id, Totals()).add(p.amount, p.currency)
            (rep.offline if p.captured_offline else rep.online).add(p.amount, p.currency)
            if state == "approved":
                rep.unsent.add(p.amount, p.currency)
        elif state == "declined":
            rep.declined += 1
        elif state == "cancelled":
            rep.cancelled += 1
        if state in ("unknown", "rejected", "authorizing") or p.notice:
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
SCHEMA_VERSION = 1


class CashierStore:
    """Cashier accounts and shifts. Thread-safe: one connection guarded by a lock (logins are rare)."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        lockout_seconds: float = LOCKOUT_SECONDS,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.lockout = timedelta(seconds=lockout_seconds)
        # argon2id, RFC 9106 "second recommended" profile (64 MiB, t=3): memory-hard against GPU guessing
        # of short numeric PINs if the file leaks.
        self._hasher = hasher or PasswordHasher(type=Type.ID)
        self._lock = threading.Lock()
        ensure_state_dir(self.path.parent)  # 0700 even when `guichet cashier add` is the first command
        create_private(self.path)  # 0600 before SQLite creates it with the umask's mode
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CashierError(f"{self.path}: schema version {version} is newer than this guichet")
            for stmt in _SCHEMA:
                db.execute(stmt)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._dummy_hash: str | None = None  # made by the first verify(): commands that never verify skip it
        create_private(self.path)  # and its -wal and -shm, now that they exist

    @classmethod
    def open(cls, state_dir: str | Path, **kwargs: Any) -> CashierStore:
        return cls(Path(state_dir) / "cashiers.db", **kwargs)

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

    # -- accounts ---------------------------------------------------------------------------------------

    def add(
        self, cashier_id: str, name: str, pin: str, *, role: str = "cashier", actor: str | None = None
    ) -> Cashier:
        """Create an account. Ids: letters, digits, '.', '_', '-'; PINs: 4 to 8 digits.

        `actor` is who created it (a supervisor's id, "cli:<user>"); None only for the first supervisor,
        who creates their own account."""
        check_id(cashier_id)
        if role not in ROLES:
            raise CashierError(f"role: {role!r} must be cashier or supervisor")
        if not name.strip():
            raise CashierError("name: must not be empty")
        if len(name.strip()) > 64 or any(not ch.isprintable() for ch in name):
            raise CashierError("name: at most 64 printable characters")
        self._check_pin(pin)
        pin_hash = self._hasher.hash(pin)
        try:
            with self._tx() as db:
                db.execute(
                    "INSERT INTO cashiers (cashier_id, name, role, pin_hash, created_at) VALUES (?,?,?,?,?)",
                    (cashier_id, name.strip(), role, pin_hash, _iso(_now())),
                )
                self._event(db, cashier_id, "created", actor or cashier_id, role)
        except sqlite3.IntegrityError:
            raise CashierError(f"cashier_id: {cashier_id!r} already exists") from None
        return self.get(cashier_id)

    @staticmethod
    def _check_pin(pin: str) -> None:
        if not _PIN.match(pin):
            raise CashierError(f"pin: must be {PIN_MIN} to {PIN_MAX} digits")

    def get(self, cashier_id: str) -> Cashier:
        with self._lock:
            row = self._db.execute("SELECT * FROM cashiers WHERE cashier_id = ?", (cashier_id,)).fetchone()
        if row is None:
            raise KeyError(cashier_id)
        return self._cashier(row)

    def list(self) -> list[Cashier]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM cashiers ORDER BY cashier_id").fetchall()
        return [self._cashier(r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM cashiers WHERE active = 1").fetchone()[0])

    @staticmethod
    def _cashier(row: sqlite3.Row) -> Cashier:
        return Cashier(
            cashier_id=row["cashier_id"],
            name=row["name"],
            role=row["role"],
            failed_attempts=row["failed_attempts"],
            locked_until=row["locked_until"],
            active=bool(row["active"]),
        )

    def verify(self, cashier_id: str, pin: str, *, now: datetime | None = None) -> Cashier:
        """Check a PIN. Wrong PINs count; at `max_attempts` in a row the account locks for `lockout`.

        Slow on purpose (argon2id, ~0.1 s): call it from a worker thread, never from the UI thread.
        """
        now = now or _now()
        # Before looking the id up, so the first call costs the same whether the id exists or not.
        dummy = self._dummy()
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM cashiers WHERE cashier_id = ? AND active = 1", (cashier_id,)
            ).fetchone()
        if row is None:
            # Same cost as a real check so response time doesn't reveal which ids exist.
            try:
                self._hasher.verify(dummy, pin + "x")
            except VerificationError:
                pass
            raise LoginFailed("unknown cashier or wrong PIN")
        if row["locked_until"] and _parse(row["locked_until"]) > now:
            raise LockedOut(cashier_id, _parse(row["locked_until"]))
        ok: bool
        try:
            ok = self._hasher.verify(row["pin_hash"], pin)
        except (VerifyMismatchError, InvalidHashError, VerificationError):
            ok = False
        with self._tx() as db:
            if ok:
                db.execute(
                    "UPDATE cashiers SET failed_attempts = 0, locked_until = NULL WHERE cashier_id = ?",
                    (cashier_id,),
                )
                if self._hasher.check_needs_rehash(row["pin_hash"]):
                    db.execute(
                        "UPDATE cashiers SET pin_hash = ? WHERE cashier_id = ?",
                        (self._hasher.hash(pin), cashier_id),
                    )
                self._event(db, cashier_id, "login", cashier_id, None)
            else:
                failed = int(
                    db.execute(
                        "UPDATE cashiers SET failed_attempts = failed_attempts + 1 WHERE cashier_id = ? "
                        "RETURNING failed_attempts",
                        (cashier_id,),
                    ).fetchone()[0]
                )
                self._event(db, cashier_id, "login_failed", None, str(failed))
                if failed >= self.max_attempts:
                    until = now + self.lockout
                    db.execute(
                        "UPDATE cashiers SET locked_until = ?, failed_attempts = 0 WHERE cashier_id = ?",
                        (_iso(until), cashier_id),
                    )
                    self._event(db, cashier_id, "locked", None, _iso(until))
        if not ok:
            if failed >= self.max_attempts:
                raise LockedOut(cashier_id, now + self.lockout)
            raise LoginFailed("unknown cashier or wrong PIN")
        return self.get(cashier_id)

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("000000")
        return self._dummy_hash

    def verify_supervisor(self, cashier_id: str, pin: str) -> Cashier:
        """`verify`, then require the supervisor role."""
        who = self.verify(cashier_id, pin)
        if not who.is_supervisor:
            raise NotSupervisor(f"{cashier_id} is not a supervisor")
        return who

    def unlock(self, cashier_id: str, *, actor: str) -> None:
        """A supervisor lifts a lockout."""
        self._check_actor(actor)
        with self._tx() as db:
            n = db.execute(
                "UPDATE cashiers SET locked_until = NULL, failed_attempts = 0 WHERE cashier_id = ?",
                (cashier_id,),
            ).rowcount
            if not n:
                raise KeyError(cashier_id)
            self._event(db, cashier_id, "unlocked", actor, None)

    def set_pin(self, cashier_id: str, pin: str, *, actor: str) -> None:
        """A new PIN (a supervisor's reset, or the cashier's own change); lifts any lockout."""
        self._check_actor(actor)
        self._check_pin(pin)
        pin_hash = self._hasher.hash(pin)
        with self._tx() as db:
            n = db.execute(
                "UPDATE cashiers SET pin_hash = ?, failed_attempts = 0, locked_until = NULL "
                "WHERE cashier_id = ?",
                (pin_hash, cashier_id),
            ).rowcount
            if not n:
                raise KeyError(cashier_id)
            self._event(db, cashier_id, "pin_changed", actor, None)

    def disable(self, cashier_id: str, *, actor: str) -> Cashier:
        """The account can no longer log in (its shifts and events stay). Refused for the last active
        supervisor: nobody could manage accounts afterwards. Disabling a disabled account changes nothing."""
        return self._set_active(cashier_id, False, actor)

    def enable(self, cashier_id: str, *, actor: str) -> Cashier:
        """Undo `disable` (failed attempts and lockout start afresh)."""
        return self._set_active(cashier_id, True, actor)

    def _set_active(self, cashier_id: str, active: bool, actor: str) -> Cashier:
        self._check_actor(actor)
        with self._tx() as db:
            row = db.execute("SELECT role, active FROM cashiers WHERE cashier_id = ?", (cashier_id,)).fetchone()
            if row is None:
                raise KeyError(cashier_id)
            if bool(row["active"]) != active:
                if not active and row["role"] == "supervisor":
                    others = db.execute(
                        "SELECT count(*) FROM cashiers WHERE role = 'supervisor' AND active = 1 AND cashier_id != ?",
                        (cashier_id,),
                    ).fetchone()[0]
                    if not others:
                        raise CashierError(f"cashier_id: {cashier_id} is the last active supervisor")
                db.execute(
                    "UPDATE cashiers SET active = ?, failed_attempts = 0, locked_until = NULL WHERE cashier_id = ?",
                    (int(active), cashier_id),
                )
                self._event(db, cashier_id, "enabled" if active else "disabled", actor, None)
        return self.get(cashier_id)

    @staticmethod
    def _check_actor(actor: str) -> None:
        if not actor or not actor.strip():
            raise CashierError("actor: who does this must be recorded")

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
            (_iso(_now()), cashier_id, kind, actor, detail),
        )

    # -- shifts -----------------------------------------------------------------------------------------

    def open_shift(self, cashier_id: str, *, now: datetime | None = None) -> Shift:
        """Open the cashier's shift; returns the already open one if there is one (a restart mid-shift)."""
        current = self.current_shift(cashier_id)
        if current:
            return current
        self.get(cashier_id)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO shifts (cashier_id, opened_at) VALUES (?, ?)", (cashier_id, _iso(now or _now()))
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
        """The Z report of a shift so far (or as closed), computed from the journal."""
        sh = self.shift(shift_id)
        since = _parse(sh.opened_at)
        until = _parse(sh.closed_at) if sh.closed_at else (now or _now())
        # The journal compares its local-time RFC 3339 strings; give it the same form, a minute early
        # (clock offsets), and filter exactly on our side.
        loose = (since - timedelta(minutes=1)).astimezone().isoformat(timespec="seconds")
        return z_report(journal.list(since=loose), terminal_id=terminal_id, since=since, until=until)

    def close_shift(
        self,
        shift_id: int,
        journal: _JournalLike,
        *,
        closed_by: str,
        terminal_id: str,
        now: datetime | None = None,
    ) -> ZReport:
        """Close the shift and keep its Z report with it."""
        sh = self.shift(shift_id)
        if sh.closed_at:
            raise ShiftError(f"shift {shift_id} was already closed at {sh.closed_at}")
        now = now or _now()
        rep = self.shift_report(shift_id, journal, terminal_id=terminal_id, now=now)
        with self._tx() as db:
            n = db.execute(
                "UPDATE shifts SET closed_at = ?, closed_by = ?, z_report = ? "
                "WHERE shift_id = ? AND closed_at IS NULL",
                (_iso(now), closed_by, json.dumps(rep.to_dict()), shift_id),
            ).rowcount
            if not n:
                raise ShiftError(f"shift {shift_id} was already closed")
            self._event(db, sh.cashier_id, "shift_closed", closed_by, str(shift_id))
        return rep

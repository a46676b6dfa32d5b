"""Cashier accounts: ids, names, roles, argon2id PIN hashes, logins and lockouts, with their audit trail.

    store = CashierStore.open(state_dir)                    # agent.cashiers: accounts and shifts together
    store.add("s0001", "Karim S.", "917355", role="supervisor")
    store.add("c0042", "Amel B.", "4826", actor="s0001")     # PIN hashed with argon2id
    cashier = store.verify("c0042", "4826")                 # LoginFailed / LockedOut
    store.unlock("c0042", actor="s0001"); store.set_pin("c0042", "5931", actor="s0001")
    store.disable("c0042", actor="s0001")                   # can no longer log in; history kept
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import Type

from agent import clock
from agent.cashiers.db import CashierError, CashierFile

Role = Literal["cashier", "supervisor"]
ROLES = ("cashier", "supervisor")

MAX_ATTEMPTS = 5
LOCKOUT_SECONDS = 300
# New PINs: 4 to 8 digits (what a counter keypad and a cashier's memory handle). Older accounts with
# longer PINs still log in: verify() never checks the format.
PIN_MIN, PIN_MAX = 4, 8
_PIN = re.compile(rf"^\d{{{PIN_MIN},{PIN_MAX}}}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


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


def check_id(cashier_id: str) -> None:
    """Raise CashierError naming the field unless `cashier_id` is 1-32 letters, digits, '.', '_', '-'."""
    if not _ID.match(cashier_id):
        raise CashierError(f"cashier_id: {cashier_id!r} must be 1-32 letters, digits, '.', '_' or '-'")


class Accounts(CashierFile):
    """The accounts of the cashier file. Thread-safe, as CashierFile."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        lockout_seconds: float = LOCKOUT_SECONDS,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.lockout = timedelta(seconds=lockout_seconds)
        # argon2id, RFC 9106 "second recommended" profile (64 MiB, t=3): memory-hard against GPU guessing
        # of short numeric PINs if the file leaks.
        self._hasher = hasher or PasswordHasher(type=Type.ID)
        self._dummy_hash: str | None = None  # made by the first verify(): commands that never verify skip it
        super().__init__(path)

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
                    (cashier_id, name.strip(), role, pin_hash, clock.stamp(clock.utc_now())),
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
        now = now or clock.utc_now()
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
        if row["locked_until"] and clock.parse(row["locked_until"]) > now:
            raise LockedOut(cashier_id, clock.parse(row["locked_until"]))
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
                        (clock.stamp(until), cashier_id),
                    )
                    self._event(db, cashier_id, "locked", None, clock.stamp(until))
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

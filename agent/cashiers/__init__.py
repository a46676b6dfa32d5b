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

The package: `db` (the file, its schema and audit trail), `accounts` (accounts, PINs, logins, lockouts),
`shifts` (shifts and the Z report). CashierStore is the one object callers hold: both on one connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.cashiers.accounts import (
    LOCKOUT_SECONDS,
    MAX_ATTEMPTS,
    PIN_MAX,
    PIN_MIN,
    ROLES,
    Cashier,
    LockedOut,
    LoginFailed,
    NotSupervisor,
    Role,
    check_id,
)
from agent.cashiers.accounts import Accounts as _Accounts
from agent.cashiers.db import FILE_NAME, SCHEMA_VERSION, CashierError
from agent.cashiers.shifts import TAKEN_STATES, Shift, ShiftError, Totals, ZReport, z_report
from agent.cashiers.shifts import Shifts as _Shifts

__all__ = [
    "LOCKOUT_SECONDS",
    "MAX_ATTEMPTS",
    "PIN_MAX",
    "PIN_MIN",
    "ROLES",
    "SCHEMA_VERSION",
    "TAKEN_STATES",
    "Cashier",
    "CashierError",
    "CashierStore",
    "LockedOut",
    "LoginFailed",
    "NotSupervisor",
    "Role",
    "Shift",
    "ShiftError",
    "Totals",
    "ZReport",
    "check_id",
    "z_report",
]


class CashierStore(_Accounts, _Shifts):
    """Cashier accounts and shifts on one connection to the cashier file. Thread-safe (one lock)."""

    @classmethod
    def open(cls, state_dir: str | Path, **kwargs: Any) -> CashierStore:
        """The store of `state_dir` (its cashiers.db); kwargs as for the constructor."""
        return cls(Path(state_dir) / FILE_NAME, **kwargs)

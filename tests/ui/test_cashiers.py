"""Cashier accounts, PINs (argon2id), lockout, shifts and the Z report, on real SQLite files."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from argon2.low_level import Type

from agent.cashiers import CashierError, CashierStore, LockedOut, LoginFailed, NotSupervisor, ShiftError

CHEAP = PasswordHasher(type=Type.ID, time_cost=1, memory_cost=8192)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = CashierStore.open(tmp_path, hasher=CHEAP, max_attempts=3, lockout_seconds=300)
    s.add("c0042", "Amel B.", "4826")
    s.add("s0001", "Karim S.", "917355", role="supervisor")
    yield s
    s.close()


def test_pins_are_stored_as_argon2id_hashes_in_a_private_file(tmp_path: Path, store: Any) -> None:
    path = tmp_path / "cashiers.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    db = sqlite3.connect(path)
    hashes = [r[0] for r in db.execute("SELECT pin_hash FROM cashiers")]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert b"4826" not in path.read_bytes() and b"917355" not in path.read_bytes()


def test_default_hasher_is_memory_hard(tmp_path: Path) -> None:
    s = CashierStore.open(tmp_path)
    s.add("c1", "A", "1234")
    h = s._db.execute("SELECT pin_hash FROM cashiers").fetchone()[0]
    s.close()
    assert h.startswith("$argon2id$") and "m=65536" in h


def test_verify_and_wrong_pin(store: Any) -> None:
    assert store.verify("c0042", "4826").name == "Amel B."
    with pytest.raises(LoginFailed):
        store.verify("c0042", "0000")
    with pytest.raises(LoginFailed):  # unknown ids get the same answer
        store.verify("nobody", "4826")


def test_lockout_after_repeated_failures_then_expiry_or_unlock(store: Any) -> None:
    t0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    for _ in range(2):
        with pytest.raises(LoginFailed):
            store.verify("c0042", "1111", now=t0)
    with pytest.raises(LockedOut):
        store.verify("c0042", "1111", now=t0)  # the third failure locks
    with pytest.raises(LockedOut):
        store.verify("c0042", "4826", now=t0 + timedelta(seconds=10))  # even the right PIN
    assert store.verify("c0042", "4826", now=t0 + timedelta(seconds=301)).cashier_id == "c0042"
    for _ in range(3):
        with pytest.raises((LoginFailed, LockedOut)):
            store.verify("c0042", "1111")
    store.unlock("c0042", actor="s0001")
    assert store.verify("c0042", "4826").cashier_id == "c0042"
    kinds = [e["kind"] for e in store.events("c0042")]
    assert kinds.count("locked") == 2 and "unlocked" in kinds


def test_a_good_pin_resets_the_failure_count(store: Any) -> None:
    for _ in range(2):
        with pytest.raises(LoginFailed):
            store.verify("c0042", "1111")
    store.verify("c0042", "4826")
    for _ in range(2):
        with pytest.raises(LoginFailed):
            store.verify("c0042", "1111")
    assert store.verify("c0042", "4826")


def test_supervisor_role(store: Any) -> None:
    assert store.verify_supervisor("s0001", "917355").is_supervisor
    with pytest.raises(NotSupervisor):
        store.verify_supervisor("c0042", "4826")


@pytest.mark.parametrize(
    ("cid", "pin", "field"),
    [("c 1", "1234", "cashier_id"), ("c1", "12", "pin"), ("c1", "12ab", "pin"), ("c0042", "1234", "cashier_id")],
)
def test_bad_accounts_are_refused_naming_the_field(store: Any, cid: str, pin: str, field: str) -> None:
    with pytest.raises(CashierError, match=f"^{field}:"):
        store.add(cid, "X", pin)


def test_shift_open_is_idempotent_and_close_keeps_the_report(store: Any, tmp_path: Path) -> None:
    from agent.journal import Journal

    shift = store.open_shift("c0042")
    assert store.open_shift("c0042").shift_id == shift.shift_id  # a restart mid-shift
    with Journal.open(tmp_path, terminal_id="T1", agency_id="A1") as journal:
        rep = store.close_shift(shift.shift_id, journal, closed_by="c0042", terminal_id="T1")
        with pytest.raises(ShiftError):
            store.close_shift(shift.shift_id, journal, closed_by="c0042", terminal_id="T1")
    assert rep.total.count == 0
    closed = store.shift(shift.shift_id)
    assert closed.closed_by == "c0042" and closed.z_report == rep.to_dict()
    assert store.open_shift("c0042").shift_id != shift.shift_id


def test_z_report_splits_online_offline_and_lists_attention(
    ui_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    from agent.cashiers import z_report
    from agent.context import AgentContext

    refs = seeded_references[:3]
    with AgentContext.open(ui_config, ["cash"]) as ctx:
        bills = [ctx.flow.lookup(r) for r in refs]  # cached while online
        ctx.flow.pay([bills[0]], method="cash", cashier_id="c0042")
        billing_server.stop()
        offline = ctx.flow.lookup(refs[1])
        assert offline.offline
        ctx.flow.pay([offline], method="cash", cashier_id="s0001")
        cancel = __import__("threading").Event()
        cancel.set()
        ctx.flow.pay([ctx.flow.lookup(refs[2])], method="cash", cashier_id="c0042", cancel=cancel)
        payments = ctx.journal.list()
    rep = z_report(payments, terminal_id="T", since=datetime.now(UTC) - timedelta(hours=1), until=datetime.now(UTC))
    assert rep.online.count == 1 and rep.offline.count == 1 and rep.cancelled == 1
    assert rep.by_cashier["c0042"].amounts["DZD"] == bills[0].amount_due
    assert rep.by_cashier["s0001"].amounts["DZD"] == offline.amount_due
    assert rep.total.amounts["DZD"] == bills[0].amount_due + offline.amount_due
    assert rep.unsent.count == 2  # nothing was uploaded (no sync ran)

"""The drawer: the opening float at shift start, the count by denomination at close against the float plus the
cash taken and its stamp duty, a difference recorded only with the supervisor who accepted it, the Z report
totalling the stamp duty apart and keeping the count. Real journal, real cashier file, the sandbox server."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from agent.cashiers import CashierStore
from agent.cashiers.shifts import DRAWER_MIGRATIONS, DrawerDifference, ShiftError
from agent.context import AgentContext
from config.cash import DEFAULT_DENOMINATIONS
from tests.core.conftest import with_changes

DZD = DEFAULT_DENOMINATIONS["DZD"]
RULE = {"enabled": True, "per_slice": 100, "slice": 10000, "minimum": 500}


@pytest.fixture
def store(billing_config: Any) -> Any:
    s = CashierStore.open(billing_config.state.dir, hasher=None)
    s.add("s0001", "Karim S.", "917355", role="supervisor")
    s.add("c0042", "Amel B.", "4826", actor="s0001")
    yield s
    s.close()


def _sheet(amount: int) -> dict[int, int]:
    """`amount` in the fewest notes and coins (a count a cashier could make)."""
    out = {}
    for d in DZD:
        out[d], amount = divmod(amount, d)
    assert amount == 0
    return out


def test_expected_counted_and_the_supervisor(billing_config: Any, store: Any, seeded_references: list[str]) -> None:
    cfg = with_changes(billing_config, cash={"stamp_duty": RULE})
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("c0042")
        store.open_float(shift.shift_id, 1_000_000, "DZD", by="c0042")
        with pytest.raises(ShiftError, match="already entered"):
            store.open_float(shift.shift_id, 5, "DZD", by="c0042")
        paid = [ctx.flow.pay([ctx.flow.lookup(r)], method="cash", cashier_id="c0042") for r in seeded_references[:2]]
        duty = sum(p.stamp_duty for p in paid)
        assert duty == sum(max(500, -(-p.total // 10000) * 100) for p in paid)
        expected = 1_000_000 + sum(p.total for p in paid) + duty
        assert store.expected_cash(shift.shift_id, ctx.journal) == expected

        # Short by 1,00 DA: refused without a supervisor, nothing written; a cashier cannot accept it.
        short = _sheet(expected - 100)
        with pytest.raises(DrawerDifference) as e:
            store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="c0042", denominations=DZD)
        assert (e.value.expected, e.value.difference) == (expected, -100)
        assert store.drawer(shift.shift_id).counted is None
        with pytest.raises(ShiftError, match="not an active supervisor"):
            store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="c0042",
                               accepted_by=store.verify("c0042", "4826"),
                               denominations=DZD)
        d = store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="c0042",
                               accepted_by=store.verify_supervisor("s0001", "917355"),
                               denominations=DZD)
        assert (d.counted, d.expected, d.difference, d.accepted_by) == (expected - 100, expected, -100, "s0001")
        assert sum(k * v for k, v in d.counts.items()) == expected - 100 and list(d.counts) == DZD

        rep = store.close_shift(shift.shift_id, ctx.journal, closed_by="c0042", terminal_id=cfg.terminal.id)
        assert rep.stamp_duty == {"DZD": duty}
        assert rep.by_method["cash"].amounts == {"DZD": sum(p.total for p in paid)}  # duty apart
        assert rep.drawer["difference"] == -100 and rep.drawer["accepted_by"] == "s0001"
        assert store.shift(shift.shift_id).z_report["drawer"]["counted"] == expected - 100
        with pytest.raises(ShiftError, match="closed"):
            store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="c0042", denominations=DZD)
        kinds = [e["kind"] for e in store.events("c0042")]
        assert "drawer_opened" in kinds and "drawer_counted" in kinds


def test_an_exact_count_needs_nobody(billing_config: Any, store: Any) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("c0042")
        store.open_float(shift.shift_id, 250_000, "DZD", by="c0042")
        d = store.count_drawer(shift.shift_id, _sheet(250_000), ctx.journal, counted_by="c0042", denominations=DZD)
        assert d.difference == 0 and d.accepted_by is None


@pytest.mark.parametrize("counts", [{12345: 1}, {100: -1}, {100: 10**9}])
def test_a_hostile_count_is_one_line(billing_config: Any, store: Any, counts: dict[int, int]) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("c0042")
        store.open_float(shift.shift_id, 0, "DZD", by="c0042")
        with pytest.raises(ShiftError) as e:
            store.count_drawer(shift.shift_id, counts, ctx.journal, counted_by="c0042", denominations=DZD)
        assert "\n" not in str(e.value)
    with pytest.raises(ShiftError, match="opening float"):
        store.open_float(store.open_shift("s0001").shift_id, -1, "DZD", by="s0001")


def test_the_drawer_schema_is_versioned_and_a_newer_one_refused(billing_config: Any, store: Any) -> None:
    path = store.path
    store.close()
    again = CashierStore(path)  # opening twice applies nothing twice
    again.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM drawer_schema").fetchall() == [(DRAWER_MIGRATIONS[-1][0],)]
    db.execute("UPDATE drawer_schema SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(ShiftError.__mro__[1], match="newer than this program"):
        CashierStore(path)

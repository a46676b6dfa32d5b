"""Review 5, the drawer: a count made before more cash came in is stale (1), a drawer holds its own cashier's
cash only (2), a supervisor never accepts a difference in their own drawer or count (7), a count names its
denominations (14). Real journal, real cashier file, the sandbox server."""

from __future__ import annotations

from typing import Any

import pytest

from agent.cashiers import CashierStore
from agent.cashiers.shifts import ShiftError, StaleCount
from agent.context import AgentContext
from config.cash import DEFAULT_DENOMINATIONS

DZD = DEFAULT_DENOMINATIONS["DZD"]


@pytest.fixture
def store(billing_config: Any) -> Any:
    s = CashierStore.open(billing_config.state.dir, hasher=None)
    s.add("s0001", "Karim S.", "917355", role="supervisor")
    s.add("s0002", "Leila M.", "927355", role="supervisor", actor="s0001")
    s.add("c0042", "Amel B.", "4826", actor="s0001")
    s.add("c0043", "Nadia K.", "5826", actor="s0001")
    yield s
    s.close()


def _sheet(amount: int) -> dict[int, int]:
    out = {}
    for d in DZD:
        out[d], amount = divmod(amount, d)
    assert amount == 0
    return out


def test_cash_taken_after_the_count_makes_it_stale(billing_config: Any, store: Any,
                                                   seeded_references: list[str]) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("c0042")
        store.open_float(shift.shift_id, 0, "DZD", by="c0042")
        first = ctx.flow.pay([ctx.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        store.count_drawer(shift.shift_id, _sheet(first.total), ctx.journal, counted_by="c0042", denominations=DZD)
        second = ctx.flow.pay([ctx.flow.lookup(seeded_references[1])], method="cash", cashier_id="c0042")
        with pytest.raises(StaleCount, match="count it again"):
            store.close_shift(shift.shift_id, ctx.journal, closed_by="c0042", terminal_id="T")
        assert store.shift(shift.shift_id).closed_at is None
        both = first.total + second.total
        store.count_drawer(shift.shift_id, _sheet(both), ctx.journal, counted_by="c0042", denominations=DZD)
        rep = store.close_shift(shift.shift_id, ctx.journal, closed_by="c0042", terminal_id="T")
        assert (rep.drawer["counted"], rep.drawer["expected"], rep.drawer["difference"]) == (both, both, 0)


def test_two_open_shifts_each_drawer_holds_its_own_cash(billing_config: Any, store: Any,
                                                        seeded_references: list[str]) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        a = store.open_shift("c0042")
        store.open_float(a.shift_id, 100_000, "DZD", by="c0042")
        b = store.open_shift("c0043")  # F10 logged c0042 out without closing the shift
        store.open_float(b.shift_id, 0, "DZD", by="c0043")
        pa = ctx.flow.pay([ctx.flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        pb = ctx.flow.pay([ctx.flow.lookup(seeded_references[1])], method="cash", cashier_id="c0043")
        assert store.expected_cash(a.shift_id, ctx.journal) == 100_000 + pa.total
        assert store.expected_cash(b.shift_id, ctx.journal) == pb.total
        rep = store.shift_report(b.shift_id, ctx.journal, terminal_id="T")
        assert set(rep.by_cashier) == {"c0043"} and rep.total.count == 1


def test_a_supervisor_cannot_accept_their_own_difference(billing_config: Any, store: Any) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("s0001")
        store.open_float(shift.shift_id, 500_000, "DZD", by="s0001")
        short = _sheet(400_000)
        me = store.verify_supervisor("s0001", "917355")
        with pytest.raises(ShiftError, match="another supervisor must"):
            store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="s0001", accepted_by=me,
                               denominations=DZD)
        assert store.drawer(shift.shift_id).counted is None
        # Nor may a supervisor who counted someone else's drawer accept its difference.
        other = store.open_shift("c0042")
        store.open_float(other.shift_id, 500_000, "DZD", by="c0042")
        with pytest.raises(ShiftError, match="another supervisor must"):
            store.count_drawer(other.shift_id, short, ctx.journal, counted_by="s0001", accepted_by=me,
                               denominations=DZD)
        second = store.verify_supervisor("s0002", "927355")
        d = store.count_drawer(shift.shift_id, short, ctx.journal, counted_by="s0001", accepted_by=second,
                               denominations=DZD)
        assert (d.difference, d.accepted_by) == (-100_000, "s0002")


def test_a_count_names_its_denominations(billing_config: Any, store: Any) -> None:
    with AgentContext.open(billing_config, ["cash"], take_payments=True) as ctx:
        shift = store.open_shift("c0042")
        store.open_float(shift.shift_id, 0, "DZD", by="c0042")
        with pytest.raises(TypeError):
            store.count_drawer(shift.shift_id, {-100_000: 1, 800_000: 1}, ctx.journal,
                               counted_by="c0042")
        with pytest.raises(ShiftError, match="not a note or coin"):
            store.count_drawer(shift.shift_id, {-100_000: 1, 800_000: 1}, ctx.journal, counted_by="c0042",
                               denominations=DZD)


@pytest.mark.parametrize("text", ["9" * 5000, "1" * 16, "1." + "0" * 5000], ids=["5000 digits", "16", "decimals"])
def test_a_huge_amount_is_one_money_error(text: str) -> None:
    # Review 5, finding 14: 4300+ digits raised int()'s ValueError, which the screens do not catch.
    from config.money import MoneyError, parse_amount

    with pytest.raises(MoneyError, match="at most 15 digits"):
        parse_amount(text, "DZD")

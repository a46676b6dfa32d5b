"""No double charge, whoever calls: the journal itself refuses, in the transaction that creates a payment, a
bill whose last payment is unknown or in progress, or taken since its amount was read. Real processes on one
real SQLite file race for the same bill."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from agent import clock
from agent.errors import BillBlocked
from agent.journal import Journal, NewPayment
from agent.states import State

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
RACERS = 4


def open_journal(state: Path | str) -> Journal:
    return Journal.open(state, terminal_id="ORAN-07-G2", agency_id="ORAN-07", check=False)


def _pay(state: str, seen_at: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    """One counter process: the amount was read at `seen_at`; all start together; cash, so 'approved' is
    the charge."""
    j = open_journal(state)
    start.wait()
    try:
        [p] = j.create([NewPayment(BILL, 345600, seen_at=seen_at)], currency="DZD", method="cash",
                       cashier_id="c", captured_offline=False)
    except BillBlocked as e:
        out.put(("refused", str(e)))
        return
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    out.put(("charged", p.receipt_number))


def _pay_read(state: str, _: str, start: multiprocessing.synchronize.Barrier, out: multiprocessing.Queue) -> None:
    """One counter process that reads the bill as the flow does (amount and receipt counter, one snapshot),
    then all pay together with that read (commit order, no clock)."""
    j = open_journal(state)
    pending, seq = j.read_bill(str(BILL["reference"]), None)
    start.wait()
    try:
        [p] = j.create([NewPayment(BILL, 345600 - pending, seen_seq=seq)], currency="DZD", method="cash",
                       cashier_id="c", captured_offline=False)
    except BillBlocked as e:
        out.put(("refused", str(e)))
        return
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    out.put(("charged", p.receipt_number))


def race(state: Path, seen_at: str, pay: Callable[..., None] = _pay) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=pay, args=(str(state), seen_at, start, out)) for _ in range(RACERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return results


def test_processes_racing_for_a_bill_whose_last_payment_is_unknown_are_all_refused(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    [p] = j.create([NewPayment(BILL, 345600)], currency="DZD", method="card_terminal", cashier_id="c",
                   captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.UNKNOWN, actor="recovery")
    results = race(tmp_path, clock.now_stamp())
    assert [r[0] for r in results] == ["refused"] * RACERS
    assert all(r[1] == "bill 410726095518: payment ORAN-07-G2-000001 has an unknown outcome; settle it first"
               for r in results)
    assert [q.state for q in j.list()] == ["unknown"]  # nothing written, nothing charged
    j.close()


def test_processes_racing_for_the_first_payment_of_a_bill_charge_it_once(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    results = race(tmp_path, clock.now_stamp())
    assert sorted(r[0] for r in results) == ["charged"] + ["refused"] * (RACERS - 1)
    for kind, line in results:
        if kind == "refused":  # in progress when it was checked, or taken since the amount was read
            assert line.startswith("bill 410726095518: payment ORAN-07-G2-000001 ")
    j = open_journal(tmp_path)
    assert [p.state for p in j.list()] == ["approved"]
    j.close()


def test_processes_that_read_the_bill_then_race_charge_it_once_by_commit_order(tmp_path: Path) -> None:
    open_journal(tmp_path).close()
    results = race(tmp_path, "", _pay_read)
    assert sorted(r[0] for r in results) == ["charged"] + ["refused"] * (RACERS - 1)
    j = open_journal(tmp_path)
    assert [p.state for p in j.list()] == ["approved"]
    j.close()


def test_a_payment_in_progress_or_taken_since_the_bill_was_read_is_refused_one_line(tmp_path: Path) -> None:
    j = open_journal(tmp_path)
    read_at = clock.now_stamp()
    [p] = j.create([NewPayment(BILL, 1000)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    with pytest.raises(BillBlocked, match=r"^bill 410726095518: payment ORAN-07-G2-000001 is in progress$"):
        j.create([NewPayment(BILL, 1000)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    # read before that payment: refused, whatever offset the time was written with
    with pytest.raises(BillBlocked, match="was taken on it since its amount was read; look it up again"):
        j.create([NewPayment(BILL, 1000, seen_at=clock.local(read_at).isoformat())], currency="DZD",
                 method="cash", cashier_id="c", captured_offline=False)
    # a basket: one blocked bill refuses the whole basket, nothing written
    with pytest.raises(BillBlocked):
        j.create([NewPayment({**BILL, "reference": "999"}, 10), NewPayment(BILL, 10, seen_at=read_at)],
                 currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    assert len(j.list()) == 1
    # read after it: the amount due already showed it; allowed
    [q] = j.create([NewPayment(BILL, 1000, seen_at=clock.now_stamp())], currency="DZD", method="cash",
                   cashier_id="c", captured_offline=False)
    assert q.receipt_number == "ORAN-07-G2-000002"
    j.close()


def test_a_seen_at_that_is_no_time_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from agent.errors import GuichetError

    j = open_journal(tmp_path)
    with pytest.raises(GuichetError, match="^seen_at: "):
        j.create([NewPayment(BILL, 10, seen_at="yesterday")], currency="DZD", method="cash", cashier_id="c",
                 captured_offline=False)
    assert j.list() == []
    j.close()

"""A basket (several bills of one customer, up to 10) paid by card end to end: through the TPE (the E+ simulator
on a pty) and through the reader (a virtual card in vpcd, the sandbox's /v1/authorizations over HTTP). One
authorisation for the total, one payment per bill sharing it, uploaded, and one receipt listing them all. An 11th
bill is refused before anything is written. Cash baskets carry their stamp duty per bill."""

from __future__ import annotations

from typing import Any

import pytest

from agent.context import AgentContext
from agent.errors import BillBlocked, InvalidAmount
from agent.payments import MAX_BASKET
from sandbox.billing.server import SandboxServer
from sandbox.cards.profiles import sandbox_cards_config
from tests.cards.conftest import insert, vpcd_reader  # noqa: F401  (fixtures)
from tests.core.conftest import recorded_ids, with_changes
from tests.tpe.conftest import FAST_BAUD, TPE_TIMEOUTS, tpe_sim  # noqa: F401  (fixture)
from ui.receipt import receipt_text


def _basket(ctx: AgentContext, server: SandboxServer, size: int = 3) -> list[Any]:
    _, refs = server.customer_with_bills(size)
    first = ctx.flow.lookup(refs[0])
    bills = [first, *ctx.flow.customer_bills(first)][:size]
    assert len(bills) == size and len({b.reference for b in bills}) == size
    return bills


def _check_basket(ctx: AgentContext, server: SandboxServer, result: Any, bills: list[Any]) -> None:
    assert result.status == "approved", result.message
    assert [p.bill_reference for p in result.payments] == [b.reference for b in bills]
    assert [p.amount for p in result.payments] == [b.amount_due for b in bills]
    assert len({p.transaction_id for p in result.payments}) == 1  # one authorisation
    assert len({p.receipt_number for p in result.payments}) == len(bills)
    assert all(p.authorization == result.payments[0].authorization for p in result.payments)
    assert ctx.sync_worker().run_once().uploaded == len(bills)
    assert sorted(recorded_ids(server)) == sorted(p.payment_id for p in result.payments)
    text = receipt_text(result.payments)
    assert all(b.reference in text for b in bills)
    assert result.payments[0].receipt_number in text


def test_a_basket_through_the_tpe(billing_config: Any, billing_server: SandboxServer, tpe_sim: Any) -> None:  # noqa: F811
    asked: list[str] = []
    sim = tpe_sim(log=asked.append)
    schemes = [{"name": "EDAHABIA", "bins": ["628058"]}, {"name": "CIB", "bins": ["603620"]}]
    cfg = with_changes(billing_config, tpe={"port": sim.path, "baud": FAST_BAUD, "framing": "7E1", **TPE_TIMEOUTS},
                       cards={"schemes": schemes})
    with AgentContext.open(cfg, ["card_terminal"], take_payments=True) as ctx:
        bills = _basket(ctx, billing_server)
        result = ctx.flow.pay(bills, method="card_terminal", cashier_id="c0042")
        requests = [line for line in asked if line.startswith("request:")]
        assert requests == [f"request: {sum(b.amount_due for b in bills)} minor units, currency 012, behaviour approve"]
        _check_basket(ctx, billing_server, result, bills)


def test_a_basket_through_the_reader(
    billing_config: Any, billing_server: SandboxServer, vpcd_reader: str, insert: Any  # noqa: F811
) -> None:
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15))
    with AgentContext.open(cfg, ["card_reader"], take_payments=True) as ctx:
        bills = _basket(ctx, billing_server)
        with insert("cib"):
            result = ctx.flow.pay(bills, method="card_reader", cashier_id="c0042")
        _check_basket(ctx, billing_server, result, bills)
        auths = billing_server.store.authorizations()
        assert [(a["payment_id"], a["amount"]) for a in auths] == [
            (result.payments[0].transaction_id, sum(b.amount_due for b in bills))]


def test_an_eleventh_bill_is_refused_before_anything_is_written(agent: AgentContext,
                                                                 seeded_references: list[str]) -> None:
    bills = [agent.flow.lookup(r) for r in seeded_references[: MAX_BASKET + 1]]
    with pytest.raises(InvalidAmount, match="at most 10 bills"):
        agent.flow.pay(bills, method="cash", cashier_id="c0042")
    assert agent.journal.list() == []
    result = agent.flow.pay(bills[:MAX_BASKET], method="cash", cashier_id="c0042")
    assert result.status == "approved" and len(result.payments) == MAX_BASKET


def test_a_cash_basket_carries_its_stamp_duty_per_bill(billing_config: Any, billing_server: SandboxServer) -> None:
    rule = {"enabled": True, "per_slice": 100, "slice": 10000, "minimum": 500, "maximum": 250000}
    cfg = with_changes(billing_config, cash={"stamp_duty": rule})
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        bills = _basket(ctx, billing_server)
        due = ctx.flow.due(bills, "cash")
        expected = [max(500, min(250000, -(-b.amount_due // 10000) * 100)) for b in bills]
        assert list(due.duties) == expected and due.total == sum(b.amount_due for b in bills) + sum(expected)
        result = ctx.flow.pay(bills, method="cash", cashier_id="c0042")
        assert result.status == "approved"
        if hasattr(result.payments[0], "stamp_duty"):  # the journal carries it (agent/journal's NewPayment)
            assert [p.stamp_duty for p in result.payments] == expected
            assert result.stamp_duty == sum(expected)
            assert ctx.sync_worker().run_once().uploaded == len(bills)
            recorded = {p["payment_id"]: p for p in billing_server.recorded_payments()}
            assert [recorded[p.payment_id]["payment"].get("stamp_duty") for p in result.payments] == expected


def test_a_bill_paid_at_another_counter_since_it_was_read_is_refused(
    agent: AgentContext, billing_config: Any, seeded_references: list[str]
) -> None:
    """Two counters (two flows on the one journal) read the same bill; the second to pay is refused inside the
    journal's write transaction, nothing charged, and a fresh lookup shows what is left."""
    other = AgentContext.open(with_changes(billing_config, payments={"allow_partial": True}), ["cash"])
    try:
        ref = seeded_references[0]
        here = agent.flow.lookup(ref)
        there = other.flow.lookup(ref)
        taken = other.flow.pay([there], method="cash", cashier_id="c0099", amount=there.amount_due // 2)
        assert taken.status == "approved"
        with pytest.raises(BillBlocked, match="since its amount was read"):
            agent.flow.pay([here], method="cash", cashier_id="c0042")
        assert [p.payment_id for p in agent.journal.list(bill_reference=ref)] == [taken.payments[0].payment_id]
        again = agent.flow.lookup(ref)
        assert again.amount_due == here.amount_due - taken.total
        assert agent.flow.pay([again], method="cash", cashier_id="c0042").status == "approved"
    finally:
        other.close()


def test_the_journal_itself_refuses_an_eleventh_bill(agent, seeded_references) -> None:
    """Whoever calls it: a basket of 11 bills writes nothing (review 5, finding 13)."""
    from agent.journal import NewPayment

    bills = [{"reference": f"{n:012d}", "amount_due": 100, "currency": "DZD", "status": "unpaid", "version": 1}
             for n in range(MAX_BASKET + 1)]
    with pytest.raises(InvalidAmount, match="at most 10 bills"):
        agent.journal.create([NewPayment(b, 100) for b in bills], currency="DZD", method="cash", cashier_id="c",
                             captured_offline=False)
    assert agent.journal.list() == []

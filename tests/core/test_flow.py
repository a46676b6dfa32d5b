"""The payment flow against the real sandbox billing server over HTTP, with real SQLite files."""

from __future__ import annotations

import threading

import pytest
import requests

from agent.context import AgentContext
from agent.errors import BillBlocked, BillNotFound, InvalidAmount, MethodUnavailable, OfflineLimitExceeded
from agent.states import State
from agent.sync import Backoff, SyncWorker
from sandbox.billing.server import SandboxServer
from tests.core.conftest import recorded_ids, with_changes


def server_bill(server: SandboxServer, ref: str) -> dict:
    r = requests.get(server.url + f"v1/bills/{ref}", headers=server.headers(), timeout=5)
    return r.json()


def drain(ctx: AgentContext) -> None:
    report = ctx.sync_worker().run_once()
    assert report.error is None, report.error
    assert report.remaining == 0


def test_online_cash_payment_reaches_the_server_once(agent: AgentContext, billing_server, seeded_references) -> None:
    ref = seeded_references[0]
    bill = agent.flow.lookup(ref)
    assert not bill.offline and bill.amount_due > 0
    result = agent.flow.pay([bill], method="cash", cashier_id="c0042")
    assert result.status == "approved" and not result.captured_offline
    assert result.receipt_number == "ORAN-07-G1-000001"
    drain(agent)
    assert agent.journal.get(result.payments[0].payment_id).state == "uploaded"
    assert recorded_ids(billing_server) == [result.payments[0].payment_id]
    assert server_bill(billing_server, ref)["status"] == "paid"
    assert agent.flow.lookup(ref).payable is False


def test_offline_payment_from_the_cache_is_uploaded_when_the_link_returns(
    agent: AgentContext, billing_server, seeded_references
) -> None:
    ref = seeded_references[1]
    assert agent.sync_worker().refresh_bills() and agent.bills.count() >= len(seeded_references)
    due = server_bill(billing_server, ref)["amount_due"]
    billing_server.stop()
    bill = agent.flow.lookup(ref)
    assert bill.offline and bill.cache_age is not None and bill.amount_due == due
    result = agent.flow.pay([bill], method="cash", cashier_id="c0042")
    assert result.status == "approved" and result.payments[0].captured_offline
    # the same bill looked up again offline shows what this counter already took
    assert agent.flow.lookup(ref).amount_due == 0
    report = agent.sync_worker().run_once()
    assert report.error and report.remaining == 1
    assert agent.journal.queue_stats().count == 1
    billing_server.start()
    drain(agent)
    [recorded] = billing_server.recorded_payments()
    assert recorded["payment_id"] == result.payments[0].payment_id
    assert recorded["payment"]["captured_offline"] is True
    assert server_bill(billing_server, ref)["amount_due"] == 0


def test_several_bills_of_one_customer_in_one_basket(agent: AgentContext, billing_server) -> None:
    _, refs = billing_server.customer_with_bills(3)
    first = agent.flow.lookup(refs[0])
    others = agent.flow.customer_bills(first)
    assert {b.reference for b in others} >= set(refs[1:])
    result = agent.flow.pay([first, *others], method="cash", cashier_id="c0042")
    assert len({p.transaction_id for p in result.payments}) == 1
    assert result.total == first.amount_due + sum(b.amount_due for b in others)
    drain(agent)
    assert len(billing_server.recorded_payments()) == len(result.payments)


def test_offline_limits_refuse_new_offline_payments_only(agent: AgentContext, billing_server, seeded_references,
                                                        billing_config) -> None:
    agent.sync_worker().refresh_bills()
    billing_server.stop()
    bills = [agent.flow.lookup(r) for r in seeded_references[:3]]
    small = min(b.amount_due for b in bills)
    agent.flow.config = with_changes(billing_config, offline={"max_payment_amount": small - 1})
    with pytest.raises(OfflineLimitExceeded, match="over the offline limit per payment"):
        agent.flow.pay([min(bills, key=lambda b: b.amount_due)], method="cash", cashier_id="c")
    agent.flow.config = with_changes(billing_config, offline={"max_count": 1})
    agent.flow.pay([bills[0]], method="cash", cashier_id="c")
    with pytest.raises(OfflineLimitExceeded, match="1 payments are waiting"):
        agent.flow.pay([bills[1]], method="cash", cashier_id="c")
    agent.flow.config = with_changes(billing_config, offline={"max_total_amount": bills[0].amount_due})
    with pytest.raises(OfflineLimitExceeded, match="would total"):
        agent.flow.pay([bills[1]], method="cash", cashier_id="c")
    assert agent.journal.queue_stats().count == 1  # refusals wrote nothing
    billing_server.start()  # online, the limits do not apply
    assert agent.flow.pay([agent.flow.lookup(bills[1].reference)], method="cash", cashier_id="c").status == "approved"


def test_unknown_bill_and_bad_amounts_are_refused_before_anything_is_written(agent: AgentContext, seeded_references):
    with pytest.raises(BillNotFound, match="999999999999: not found"):
        agent.flow.lookup("999999999999")
    with pytest.raises(BillNotFound, match="letters and digits"):
        agent.flow.lookup("41'; DROP")
    bill = agent.flow.lookup(seeded_references[0])
    with pytest.raises(InvalidAmount, match="more than"):
        agent.flow.pay([bill], method="cash", cashier_id="c", amount=bill.amount_due + 1)
    with pytest.raises(InvalidAmount, match="partial payments are not allowed"):
        agent.flow.pay([bill], method="cash", cashier_id="c", amount=1)
    with pytest.raises(InvalidAmount, match="positive"):
        agent.flow.pay([bill], method="cash", cashier_id="c", amount=0)
    with pytest.raises(MethodUnavailable):
        agent.flow.pay([bill], method="card_terminal", cashier_id="c")
    assert agent.journal.list() == []


def test_a_bill_with_an_unknown_payment_cannot_be_paid_again(agent: AgentContext, billing_server, seeded_references):
    bill = agent.flow.lookup(seeded_references[0])

    class Silent:  # a terminal that took the amount and never answered
        method = "cash"

        def authorize(self, req, *, cancel, on_status):
            from agent.authorize import AuthOutcome

            return AuthOutcome("unknown", message="no answer from the terminal")

    agent.flow.authorizers["cash"] = Silent()
    result = agent.flow.pay([bill], method="cash", cashier_id="c")
    assert result.status == "unknown"
    with pytest.raises(BillBlocked, match="unknown outcome"):
        agent.flow.pay([agent.flow.lookup(bill.reference)], method="cash", cashier_id="c")
    with pytest.raises(InvalidAmount, match="authorisation code"):
        agent.flow.settle_unknown(result.payments[0].payment_id, approved=True, actor="sup1")
    [settled] = agent.flow.settle_unknown(result.payments[0].payment_id, approved=True, actor="sup1", code="A1B2C3")
    assert settled.state == "approved" and settled.authorization["code"] == "A1B2C3"
    assert agent.journal.audit(settled.payment_id)[-1]["actor"] == "sup1"
    drain(agent)
    assert recorded_ids(billing_server) == [settled.payment_id]


def test_cancel_before_authorising_takes_nothing(agent: AgentContext, seeded_references) -> None:
    cancel = threading.Event()
    cancel.set()
    result = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c", cancel=cancel)
    assert result.status == "cancelled" and result.payments[0].state == "cancelled"
    assert agent.journal.queue_stats().count == 0


def test_garbage_and_wrong_content_type_lose_nothing(agent: AgentContext, billing_server, seeded_references) -> None:
    agent.sync_worker().refresh_bills()
    for fault in ({"garbage_rate": 1.0}, {"wrong_content_type_rate": 1.0}):
        billing_server.set_faults(**fault)
        bill = agent.flow.lookup(seeded_references[len(agent.journal.list())])
        assert bill.offline  # an answer we cannot trust is no answer: the cache serves
        agent.flow.pay([bill], method="cash", cashier_id="c")
        report = agent.sync_worker().run_once()
        assert report.error and ("not JSON" in report.error or "content type" in report.error)
        assert agent.journal.queue_stats().count == len(agent.journal.list())
    billing_server.set_faults()
    drain(agent)
    assert sorted(recorded_ids(billing_server)) == sorted(p.payment_id for p in agent.journal.list())


def test_rejected_payment_needs_attention_and_is_never_retried(agent: AgentContext, billing_server) -> None:
    # a bill the cache knows but the server does not (cancelled upstream and purged)
    agent.bills.store([{"reference": "900000000001", "amount_due": 5000, "currency": "DZD", "status": "unpaid",
                        "version": 1, "agency_id": "ORAN-07", "customer_id": "C-X"}])
    billing_server.stop()
    p = agent.flow.pay([agent.flow.lookup("900000000001")], method="cash", cashier_id="c").payments[0]
    billing_server.start()
    report = agent.sync_worker().run_once()
    assert report.rejected == 1 and report.remaining == 0
    got = agent.journal.get(p.payment_id)
    assert got.state == State.REJECTED and got.error.startswith("bill_not_found")
    assert agent.journal.queue_stats().needs_attention == 1
    assert agent.sync_worker().run_once().rejected == 0


def test_payment_for_an_already_paid_bill_is_credited_and_shown(agent: AgentContext, billing_server,
                                                                seeded_references) -> None:
    ref = seeded_references[2]
    agent.sync_worker().refresh_bills()
    billing_server.stop()
    p = agent.flow.pay([agent.flow.lookup(ref)], method="cash", cashier_id="c").payments[0]
    billing_server.start()
    billing_server.put_bill(reference=ref, amount_due=0, status="paid")  # paid meanwhile at another counter
    report = agent.sync_worker().run_once()
    assert report.uploaded == 1 and report.notices == [(p.receipt_number, "credited_to_account")]
    assert agent.journal.get(p.payment_id).notice == "credited_to_account"


def test_retry_after_is_honoured_and_backoff_has_full_jitter(agent: AgentContext, billing_server, seeded_references):
    agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c")
    billing_server.set_faults(unavailable_rate=1.0, retry_after=7)
    worker = SyncWorker(agent.config, agent.journal, agent.client, agent.bills)
    report, delay = worker.step()
    assert report.retry_after == 7 and delay >= 7
    assert worker.status().online is False and worker.status().retry_in == delay
    b = Backoff()
    ceilings = [min(300, 2**n) for n in range(12)]
    delays = [b.next() for _ in range(12)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 12  # jittered, not a fixed schedule


def test_heartbeat_reports_the_queue_and_warns_on_clock_skew(agent: AgentContext, billing_server, caplog):
    worker = agent.sync_worker()
    assert worker.heartbeat() is not None
    assert abs(worker.status().clock_skew or 0) < 120

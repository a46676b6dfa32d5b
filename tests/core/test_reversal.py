"""The reversal queue and the chip data's edge, without a card (issue 14): the journal queues a reversal with the
`unknown` outcome in one transaction, the `reversals` job sends it to the real sandbox server over HTTP until it
is acknowledged or the server shows no approval, then the payment is declined. Chip data holding a card number,
track or PIN data is refused by the journal whatever the caller. (With a card: tests/cards/test_emv_journal.py.)"""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import clock
from agent.errors import GuichetError, InvalidTransition, ServerUnreachable
from agent.journal import NEVER_STORED_TAGS, NewPayment, chip_fault
from agent.reversals import drain, reversal_jobs
from agent.scheduler import JobParts, Scheduler
from agent.states import State
from drivers.emv import tlv as T

GOOD_DE55 = "9F2608AABBCCDDEEFF00119F2701409F360200119505000000800082023800"


def _unknown(agent, ref, *, reversal=None, chip=None):
    bill = agent.flow.lookup(ref)
    [p] = agent.journal.create([NewPayment(bill.to_api(), bill.amount_due)], currency="DZD", method="card_reader",
                               cashier_id="c1", captured_offline=False)
    agent.journal.transition(p.payment_id, State.AUTHORIZING, actor="c1")
    [p] = agent.journal.transition(p.payment_id, State.UNKNOWN, actor="c1", error="the card failed",
                                   chip=chip or {"entry_mode": "chip", "de55": GOOD_DE55}, reversal=reversal)
    return p


def _row(agent, tid):
    with sqlite3.connect(agent.journal.path) as db:
        return db.execute("SELECT reason, attempts, done_at, outcome FROM reversal WHERE transaction_id = ?",
                          (tid,)).fetchone()


def test_the_unknown_outcome_and_its_reversal_are_one_write(agent, seeded_references):
    p = _unknown(agent, seeded_references[0], reversal="card_removed")
    assert p.chip == {"entry_mode": "chip", "de55": GOOD_DE55}
    [r] = agent.journal.reversals_waiting()
    assert (r["transaction_id"], r["reason"], r["states"], r["attempts"]) == (p.transaction_id, "card_removed",
                                                                             ["unknown"], 0)
    # a move the journal refuses queues nothing either
    [q] = agent.journal.create([NewPayment(agent.flow.lookup(seeded_references[1]).to_api(), 100)], currency="DZD",
                               method="card_reader", cashier_id="c1", captured_offline=False)
    with pytest.raises(InvalidTransition):
        agent.journal.transition(q.payment_id, State.UNKNOWN, actor="c1", reversal="timeout")
    assert [r["transaction_id"] for r in agent.journal.reversals_waiting()] == [p.transaction_id]


@pytest.mark.parametrize("de55", [
    "5A0862805800000012349F270140",       # the PAN
    "57086280580000001234D2",             # track 2 (and cut short)
    "70085A06628058000000",               # the PAN inside a template
    "9F1F03313233",                       # track 1 discretionary data
    "9F6B03112233", "5603112233", "9903AABBCC",  # track 2 (contactless), track 1, PIN data
    "9F27", "ZZ", 17,
])
def test_chip_data_with_card_number_track_or_pin_data_is_refused(agent, seeded_references, de55):
    bill = agent.flow.lookup(seeded_references[2])
    [p] = agent.journal.create([NewPayment(bill.to_api(), bill.amount_due)], currency="DZD", method="card_reader",
                               cashier_id="c1", captured_offline=False)
    agent.journal.transition(p.payment_id, State.AUTHORIZING, actor="c1")
    with pytest.raises(GuichetError, match=r"^chip\.de55: ") as e:
        agent.journal.transition(p.payment_id, State.APPROVED, actor="c1", chip={"de55": de55})
    assert "\n" not in str(e.value)
    stored = agent.journal.get(p.payment_id)
    assert stored.state == "authorizing" and stored.chip is None  # nothing written


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=64).map(lambda b: b.hex()), st.text(max_size=40)))
def test_chip_fault_is_one_line_or_nothing_stored_is_secret(de55):
    fault = chip_fault({"de55": de55})
    if fault is None:
        tags = {t.tag for t in T.walk(T.decode(bytes.fromhex(de55)))}
        assert not tags & NEVER_STORED_TAGS
    else:
        assert fault.startswith("chip") and "\n" not in fault


def test_a_timeout_reversal_waits_out_the_grace_then_declines(agent, seeded_references, billing_server):
    p = _unknown(agent, seeded_references[3], reversal="timeout")
    # the server holds no approval (the request never reached it, or is still on its way): not believed yet
    out = drain(agent.journal, agent.client, grace=80)
    assert out.error and out.retry_after and 0 < out.retry_after <= 80
    assert _row(agent, p.transaction_id)[1:] == (1, None, None)
    assert agent.journal.get(p.payment_id).state == "unknown"
    later = clock.utc_now() + timedelta(seconds=81)
    assert drain(agent.journal, agent.client, grace=80, now=later).error is None
    assert _row(agent, p.transaction_id)[3] == "no_approval"
    done = agent.journal.get(p.payment_id)
    assert done.state == "declined" and "no approval" in (done.error or "")
    assert agent.journal.blocking_payment(p.bill_reference) is None


def test_a_reversal_is_kept_while_the_server_is_down_or_answers_garbage(agent, seeded_references, billing_server):
    p = _unknown(agent, seeded_references[4], reversal="card_declined_after_approval")
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["all"], seed=7, only=["POST /v1/authorizations/"])
    for _ in range(3):
        try:  # an answer outside the contract: this job backs off (a redirect is taken as the link's fault)
            out = drain(agent.journal, agent.client, grace=80)
            assert out.error and "\n" not in out.error and not out.offline
        except ServerUnreachable as e:
            assert "\n" not in str(e)
    billing_server.set_faults()
    billing_server.stop()
    with pytest.raises(ServerUnreachable):
        drain(agent.journal, agent.client, grace=80)
    assert _row(agent, p.transaction_id)[1] == 4 and agent.journal.get(p.payment_id).state == "unknown"
    billing_server.start()
    # back: 404, not a timeout reversal: the server holds no approval, believed at once
    assert drain(agent.journal, agent.client, grace=80).error is None
    assert agent.journal.get(p.payment_id).state == "declined"


def test_a_payment_settled_meanwhile_is_not_reversed(agent, seeded_references, billing_server):
    p = _unknown(agent, seeded_references[5], reversal="card_removed")
    agent.journal.transition(p.payment_id, State.APPROVED, actor="sup1", authorization={"code": "123456"},
                             detail={"settlement": {"by": "sup1", "from": "server", "at": clock.now_rfc3339()}})
    billing_server.stop()  # nothing is sent: no server needed
    assert drain(agent.journal, agent.client, grace=80).error is None
    assert _row(agent, p.transaction_id)[2:][1] == "settled"
    assert agent.journal.get(p.payment_id).state == "approved"


def test_one_request_per_step_more_while_others_wait(agent, seeded_references, billing_server):
    for ref in seeded_references[6:9]:
        _unknown(agent, ref, reversal="card_removed")
    outs = [drain(agent.journal, agent.client, grace=80) for _ in range(3)]
    assert [o.more for o in outs] == [True, True, False]
    assert agent.journal.reversals_waiting() == []


def test_the_job_is_registered_with_the_agent(agent):
    from guichet.cli.run import JOBS

    assert reversal_jobs in JOBS
    sched = Scheduler()
    reversal_jobs(sched, JobParts(agent.config, agent.journal, agent.client))
    assert sched.job("reversals") is not None and sched.job("reversals").needs_link


def test_an_unknown_reversal_reason_is_refused(agent, seeded_references):
    with pytest.raises(GuichetError, match="reversal"):
        _unknown(agent, seeded_references[9], reversal="because")


def test_the_scheduler_drains_the_queue_one_request_a_step(agent, seeded_references, billing_server):
    for ref in seeded_references[10:12]:
        _unknown(agent, ref, reversal="card_removed")
    sched = Scheduler()
    reversal_jobs(sched, JobParts(agent.config, agent.journal, agent.client))
    out = sched.run_once(["reversals"])["reversals"]
    assert out.error is None and not out.more
    assert sched.job("reversals").runs == 2  # one reversal per step
    assert agent.journal.reversals_waiting() == []


def test_a_payment_without_chip_data_uploads_as_before(agent, seeded_references):
    bill = agent.flow.lookup(seeded_references[12])
    [p] = agent.journal.create([NewPayment(bill.to_api(), bill.amount_due)], currency="DZD", method="card_reader",
                               cashier_id="c1", captured_offline=False)
    agent.journal.transition(p.payment_id, State.AUTHORIZING, actor="c1")
    [p] = agent.journal.transition(p.payment_id, State.APPROVED, actor="c1", authorization={"code": "1"},
                                   card={"scheme": "CIB", "pan_masked": "628058******1234", "entry_mode": "chip"})
    body = p.to_api()
    assert p.chip is None and "emv" not in body and "entry_mode" not in body["card"]  # a replay stays byte-equal

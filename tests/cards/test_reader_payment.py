"""A card_reader payment end to end: virtual card in the vpcd reader, the real pcscd, the sandbox server's
/v1/authorizations over HTTP, the real journal. The full PAN never reaches the journal file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.context import AgentContext
from sandbox.cards.profiles import PROFILES, sandbox_cards_config
from tests.core.conftest import recorded_ids, with_changes


@pytest.fixture
def reader_agent(billing_config, vpcd_reader):
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                       payments={"allow_partial": True})
    ctx = AgentContext.open(cfg, ["card_reader"], take_payments=True)
    yield ctx
    ctx.close()


def assert_no_pan_in(state_dir: str, pan: str) -> None:
    for f in Path(state_dir).iterdir():
        if f.is_file():
            assert pan.encode() not in f.read_bytes(), f"full PAN found in {f}"


def test_card_reader_payment_is_approved_and_uploaded(reader_agent, insert, billing_server, seeded_references):
    bill = reader_agent.flow.lookup(seeded_references[0])
    statuses: list[str] = []
    with insert("cib"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c0042", on_status=statuses.append)
    assert result.status == "approved", result.message
    [p] = result.payments
    assert p.card["scheme"] == "CIB" and p.card["pan_masked"] == PROFILES["cib"].pan[:6] + "******" + \
        PROFILES["cib"].pan[-4:]
    assert len(p.card["pan_token"]) == 64 and p.authorization["code"]
    assert statuses[0] == "insert_card" and "authorising" in statuses
    report = reader_agent.sync_worker().run_once()
    assert report.uploaded == 1 and recorded_ids(billing_server) == [p.payment_id]
    assert_no_pan_in(reader_agent.config.state.dir, PROFILES["cib"].pan)


def test_declined_by_the_bank(reader_agent, insert, billing_server, seeded_references):
    bill = reader_agent.flow.lookup(seeded_references[1])
    amount = bill.amount_due - 49  # the sandbox acquirer declines amounts ending in 51
    assert amount % 100 == 51
    with insert("edahabia"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c", amount=amount)
    assert result.status == "declined" and "51" in result.message
    assert reader_agent.journal.queue_stats().count == 0


def test_lost_answer_is_resolved_by_asking_the_server(reader_agent, insert, billing_server, seeded_references):
    bill = reader_agent.flow.lookup(seeded_references[2])
    billing_server.set_faults(drop_after_commit_rate=1.0, only=["POST /v1/authorizations"])
    with insert("visa_cl"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c")
    # the acquirer approved, the answer was lost; GET /v1/authorizations/{id} told us: no double charge
    assert result.status == "approved"
    assert billing_server.fault_status()["injected"]


def test_no_card_in_time_takes_nothing(reader_agent, billing_server, seeded_references, billing_config):
    reader_agent.flow.authorizers["card_reader"].config = with_changes(
        reader_agent.config, cards={"read_timeout": 0.5})
    result = reader_agent.flow.pay([reader_agent.flow.lookup(seeded_references[3])], method="card_reader",
                                   cashier_id="c")
    assert result.status == "cancelled" and "in time" in result.message


def test_a_lost_answer_with_no_record_yet_stays_unknown(reader_agent, insert, billing_server, seeded_references):
    """The acquirer may still be working on it: a 404 right after a lost answer is never read as 'not charged'."""
    from agent.errors import GuichetError

    bill = reader_agent.flow.lookup(seeded_references[4])
    billing_server.set_faults(error_rate=1.0, only=["POST /v1/authorizations"])
    with insert("cib"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c")
    assert result.status == "unknown"
    [p] = result.payments
    with pytest.raises(GuichetError, match="ask again in"):
        reader_agent.flow.resolve_unknown_online(p.payment_id)
    assert reader_agent.journal.get(p.payment_id).state == "unknown"
    assert reader_agent.journal.blocking_payment(bill.reference) is not None

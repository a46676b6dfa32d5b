"""Chip data in the journal and what follows it (issue 14): the final cryptogram's DE55 uploaded as `emv`, an
offline TC approved by the card and verified by the sandbox acquirer at upload (a forged one rejected
`cryptogram_invalid`), and a reversal the server could not take at once, queued, sent when it is back, the
payment then declined. Real pcscd + vpcd, the sandbox server over HTTP on 127.0.0.1, the real journal."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
import requests

from agent.context import AgentContext
from agent.errors import ServerUnreachable
from agent.reversals import drain
from drivers.emv import tlv as T
from sandbox.cards.profiles import TEST_PANS, TEST_SCHEMES, sandbox_cards_config, sandbox_emv_config
from tests.core.conftest import with_changes


def _recorded(server) -> dict[str, dict[str, Any]]:
    """What the sandbox recorded, by payment_id."""
    return {i["payment_id"]: i for i in server.recorded_payments()}


def _authorizations(server) -> dict[str, dict[str, Any]]:
    r = requests.get(server.url + "_sandbox/authorizations", headers=server.admin_headers(), timeout=5)
    r.raise_for_status()
    return {a["payment_id"]: a for a in r.json()["items"]}


def _upload(agent: AgentContext) -> None:
    agent.sync_worker().run_once()


@pytest.fixture
def offline_cfg(billing_config, vpcd_reader):
    # CIB's floor limit high enough that the terminal may approve offline (Book 3 10.6): the card decides
    schemes = [dict(s, floor_limit=100_000_000) if s["name"] == "CIB" else s for s in TEST_SCHEMES]
    return with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15,
                                                                   schemes=schemes),
                        emv=sandbox_emv_config(), payments={"allow_partial": True})


@pytest.fixture
def emv_agent(billing_config, vpcd_reader):
    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                       emv=sandbox_emv_config(), payments={"allow_partial": True})
    with AgentContext.open(cfg, ["card_reader"], take_payments=True) as ctx:
        yield ctx


def _pay(agent, insert, profile, bill):
    with insert(profile):
        result = agent.flow.pay([bill], method="card_reader", cashier_id="c1")
    [p] = result.payments
    return result, agent.journal.get(p.payment_id)


@pytest.mark.parametrize(("profile", "entry", "cryptograms"), [("cib", "chip", ["ARQC", "TC"]),
                                                            ("visa_cl", "contactless", ["ARQC"])])
def test_an_approved_chip_payment_is_uploaded_with_its_emv(emv_agent, insert, billing_server, seeded_references,
                                                           profile, entry, cryptograms):
    result, p = _pay(emv_agent, insert, profile, emv_agent.flow.lookup(seeded_references[0]))
    assert result.status == "approved", result.message
    tags = {t.tag for t in T.walk(T.decode(bytes.fromhex(p.chip["de55"])))}
    assert 0x9F26 in tags and not {0x5A, 0x57, 0x56, 0x9F1F, 0x9F6B, 0x99} & tags
    assert p.chip["cryptograms"] == cryptograms and p.chip["entry_mode"] == entry
    if entry == "contactless":
        assert 0x9F66 in tags  # the TTQ travels with a tap
    body = p.to_api()
    assert body["emv"] == p.chip["de55"] and body["card"]["entry_mode"] == entry
    _upload(emv_agent)
    assert emv_agent.journal.get(p.payment_id).state == "uploaded"
    recorded = _recorded(billing_server)[p.payment_id]["payment"]
    assert recorded["emv"] == p.chip["de55"] and recorded["card"]["entry_mode"] == entry
    # PCI: nothing of the card number in the journal's file (the PCI scan of tests/zz_pci covers the state dir)
    raw = emv_agent.journal.path.read_bytes()
    assert not any(pan.encode() in raw for pan in TEST_PANS)


def _offline_tc(agent, insert, billing_server, refs):
    """The card is first known to the sandbox issuer (an ARQC it verified, with the floor limit at 0), then a
    bill from the offline cache is paid with the card's TC while the server is down."""
    online = with_changes(agent.config, cards={"schemes": TEST_SCHEMES})
    with AgentContext.open(online, ["card_reader"]) as first_agent:
        first, _ = _pay(first_agent, insert, "cib", first_agent.flow.lookup(refs[0]))
    assert first.status == "approved" and first.payments[0].chip["cryptograms"] == ["ARQC", "TC"], first.message
    agent.flow.lookup(refs[1])  # now in the offline cache
    billing_server.stop()
    bill = agent.flow.lookup(refs[1])
    assert bill.offline
    result, p = _pay(agent, insert, "cib", bill)
    return result, p


def test_an_offline_tc_is_uploaded_later_and_accepted(offline_cfg, insert, billing_server, seeded_references):
    with AgentContext.open(offline_cfg, ["card_reader"], take_payments=True) as agent:
        result, p = _offline_tc(agent, insert, billing_server, seeded_references)
        assert result.status == "approved", result.message
        assert p.captured_offline and p.chip["cryptograms"] == ["TC"]
        tags = {t.tag: t.value for t in T.decode(bytes.fromhex(p.chip["de55"]))}
        assert tags[0x9F27][0] & 0xC0 == 0x40  # a TC
        billing_server.start()
        _upload(agent)
        assert agent.journal.get(p.payment_id).state == "uploaded", billing_server.rejections()
        assert _recorded(billing_server)[p.payment_id]["payment"]["emv"] == p.chip["de55"]


def test_a_forged_offline_tc_is_rejected_and_needs_attention(offline_cfg, insert, billing_server,
                                                            seeded_references):
    with AgentContext.open(offline_cfg, ["card_reader"], take_payments=True) as agent:
        result, p = _offline_tc(agent, insert, billing_server, seeded_references)
        assert result.status == "approved", result.message
        # someone with the file changes the cryptogram (9F26's first byte) of the stored chip data
        de55 = p.chip["de55"]
        at = de55.index("9F2608") + 6
        forged = de55[:at] + f"{int(de55[at:at + 2], 16) ^ 0xFF:02X}" + de55[at + 2:]
        with sqlite3.connect(agent.journal.path) as db:
            db.execute("UPDATE payment SET chip = json_set(chip, '$.de55', ?) WHERE payment_id = ?",
                       (forged, p.payment_id))
        agent.journal._recent.clear()  # noqa: SLF001 - the copy this process holds predates the tampering
        billing_server.start()
        _upload(agent)
        assert agent.journal.get(p.payment_id).state == "rejected"
        assert "cryptogram_invalid" in (agent.journal.get(p.payment_id).error or "")
        assert agent.journal.queue_stats().needs_attention >= 1
        assert p.payment_id not in _recorded(billing_server)


def test_aac_after_approval_is_reversed_when_the_server_is_back(emv_agent, insert, billing_server,
                                                               seeded_references):
    bill = emv_agent.flow.lookup(seeded_references[2])
    # the acquirer approves; the reversal sent at once gets a 500 (the server is sick): not acknowledged
    billing_server.set_faults(error_rate=1.0, only=["POST /v1/authorizations/"])
    result, p = _pay(emv_agent, insert, "emv_aac_second", bill)
    assert result.status == "unknown" and "do not pay again" in result.message, result.message
    assert p.chip["reversal_reason"] == "card_declined_after_approval" and p.chip["reversal_acknowledged"] is False
    [waiting] = emv_agent.journal.reversals_waiting()
    assert waiting["transaction_id"] == p.transaction_id and waiting["states"] == ["unknown"]
    assert emv_agent.journal.blocking_payment(p.bill_reference) is not None  # never charged twice meanwhile
    billing_server.set_faults()
    billing_server.stop()  # now down altogether: the queue keeps it
    with pytest.raises(ServerUnreachable):
        drain(emv_agent.journal, emv_agent.client, grace=80)
    [waiting] = emv_agent.journal.reversals_waiting()
    assert waiting["attempts"] == 1 and emv_agent.journal.get(p.payment_id).state == "unknown"
    billing_server.start()
    assert drain(emv_agent.journal, emv_agent.client, grace=80).error is None
    assert emv_agent.journal.reversals_waiting() == []
    done = emv_agent.journal.get(p.payment_id)
    assert done.state == "declined" and "reversed" in (done.error or "")
    auth = _authorizations(billing_server)[p.transaction_id]
    assert auth["reversed"] and auth["reversal_reason"] == "card_declined_after_approval"
    assert emv_agent.journal.blocking_payment(p.bill_reference) is None
    assert drain(emv_agent.journal, emv_agent.client, grace=80).error is None  # nothing left: nothing sent


def test_offline_card_payments_keep_to_the_agents_offline_limits(billing_config, seeded_references,
                                                                 billing_server):
    """No card needed: over `[offline]` the flow refuses before asking any card; the reader's own question
    (offline_room, after a failed online attempt) counts its payment, already in the journal, once."""
    from agent.context import offline_room
    from agent.errors import OfflineLimitExceeded
    from agent.journal import NewPayment
    from agent.states import State

    cfg = with_changes(billing_config, offline={"max_payment_amount": 100_000, "max_total_amount": 150_000},
                       payments={"allow_partial": True})
    with AgentContext.open(cfg, ["card_reader"], take_payments=True) as agent:
        other = agent.flow.lookup(seeded_references[1])
        agent.flow.lookup(seeded_references[0])
        billing_server.stop()
        bill = agent.flow.lookup(seeded_references[0])
        assert bill.offline
        assert agent.flow.check([bill], "card_reader", amount=min(bill.amount_due, 100_000))
        if bill.amount_due > 100_000:
            with pytest.raises(OfflineLimitExceeded):
                agent.flow.check([bill], "card_reader")
        room = offline_room(cfg, agent.journal)
        assert room(100_000) and not room(100_001)
        [p] = agent.journal.create([NewPayment(bill.to_api(), 90_000)], currency="DZD", method="card_reader",
                                   cashier_id="c1", captured_offline=True)
        agent.journal.transition(p.payment_id, State.AUTHORIZING, actor="c1")
        assert room(90_000)  # this payment itself, counted once
        agent.journal.transition(p.payment_id, State.UNKNOWN, actor="c1")
        [q] = agent.journal.create([NewPayment(other.to_api(), 90_000)],
                                   currency="DZD", method="card_reader", cashier_id="c1", captured_offline=True)
        agent.journal.transition(q.payment_id, State.AUTHORIZING, actor="c1")
        assert not room(90_000)  # the second one: 180 000 in doubt or unsent, over 150 000

"""A card_reader payment end to end: virtual card in the vpcd reader, the real pcscd, the sandbox server's
/v1/authorizations over HTTP, the real journal. The full PAN never reaches the journal file."""

from __future__ import annotations

import json
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


def test_no_card_in_time_takes_nothing(reader_agent, billing_server, seeded_references, billing_config, vpcd_reader):
    from tests.cards.conftest import vpcd_lock, wait_presence

    reader_agent.flow.authorizers["card_reader"].config = with_changes(
        reader_agent.config, cards={"read_timeout": 0.5})
    with vpcd_lock():  # the slot is shared by every process: no one else's card may be in it meanwhile
        wait_presence(vpcd_reader, False)
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


# ----------------------------------------------------------------------------- hostile cards (issue 12)
# A card that cannot be used fails before anything leaves the agent: the payment is final (declined or
# cancelled), never unknown, the bill stays payable, and the acquirer never heard of it.

NOT_SENT = {
    "pdol_huge": "PDOL",  # asks for 271 bytes: refused before GET PROCESSING OPTIONS
    "afl_flood": "records",  # lists 16065 records: refused before the first READ RECORD
    "bytes_flood": "bytes",  # 7.5 KB of FCI, 7.5 KB of GPO answer, then records
    "garbage_wrong_tag": "71",  # GPO answered with a template that is neither 80 nor 77
    "garbage_truncated": "runs past the end",
}


@pytest.mark.parametrize("profile", list(NOT_SENT))
def test_an_unusable_card_is_declined_before_any_request(reader_agent, insert, billing_server, seeded_references,
                                                        profile):
    bill = reader_agent.flow.lookup(seeded_references[0])
    with insert(profile) as link:
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c0042")
        commands = list(link.card.commands)
    assert result.status == "declined", result.message
    assert NOT_SENT[profile] in result.message and "\n" not in result.message
    [p] = result.payments
    assert p.state == "declined" and p.card is None
    assert reader_agent.journal.blocking_payment(bill.reference) is None  # the bill can be paid again at once
    assert reader_agent.client.get_authorization(p.transaction_id) is None  # nothing reached the acquirer
    reads = [c for c in commands if c[:2] == b"\x00\xb2"]
    assert len(reads) <= 64 + 2  # AFL records bounded (+ the PSE directory)
    if profile == "pdol_huge":
        assert not any(c[:2] == b"\x80\xa8" for c in commands)  # GPO never sent
    assert_no_pan_in(reader_agent.config.state.dir, PROFILES[profile].pan)


def test_a_card_too_slow_is_stopped_at_the_read_timeout(reader_agent, insert, billing_server, seeded_references):
    """cards.read_timeout bounds the read itself (once the card is in), not only the wait for a card."""
    reader_agent.flow.authorizers["card_reader"].config = with_changes(reader_agent.config, cards={"read_timeout": 0.4})
    bill = reader_agent.flow.lookup(seeded_references[1])
    with insert("slow") as link:
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c")
        seen = link.apdus
    # A slow card and a slow reader look the same: not the card's fault, "try again" (cancelled), not declined.
    assert result.status == "cancelled" and "too long" in result.message, result.message
    assert seen < PROFILES["slow"].expected_apdus  # stopped between two commands, not at the end
    assert reader_agent.journal.blocking_payment(bill.reference) is None


def test_a_card_stalled_on_one_command_ends_the_payment_and_the_reader_is_usable_after(
        reader_agent, insert, billing_server, seeded_references):
    """One command that outlasts cards.read_timeout: the payment ends at the deadline, while the card still holds
    the command (the read stops waiting for it), cancelled with nothing sent; the next card pays."""
    flow = reader_agent.flow
    flow.authorizers["card_reader"].config = with_changes(reader_agent.config, cards={"read_timeout": 0.5})
    bill, other = flow.lookup(seeded_references[6]), flow.lookup(seeded_references[7])
    with insert("stall") as link:
        result = flow.pay([bill], method="card_reader", cashier_id="c")
        received, answered = link.card.apdus, link.apdus
    assert result.status == "cancelled" and "too long" in result.message and "try again" in result.message
    # Ended while the card was still on its first command (it thinks 3 s; read_timeout is 0.5 s).
    assert (received, answered) == (1, 0)
    [p] = result.payments
    assert reader_agent.client.get_authorization(p.transaction_id) is None
    flow.authorizers["card_reader"].config = reader_agent.config
    with insert("cib"):
        again = flow.pay([other], method="card_reader", cashier_id="c")
    assert again.status == "approved", again.message


def test_the_cashier_cancel_during_the_read_stops_it_at_the_next_command(reader_agent, insert, billing_server,
                                                                        seeded_references):
    """Cancel pressed while the card works on its 3rd command: the read ends without waiting for its answer, and
    no 4th command is sent."""
    import threading

    cancel = threading.Event()

    def on_apdu(n: int) -> None:
        if n == 3:
            cancel.set()

    bill = reader_agent.flow.lookup(seeded_references[8])
    with insert("slow") as link:
        link.card.on_apdu = on_apdu
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c", cancel=cancel)
        link.remove()  # the card out: whatever it was still answering, nothing more can reach it
        received = link.card.apdus
    assert result.status == "cancelled", result.message
    assert received == 3
    [p] = result.payments
    assert reader_agent.client.get_authorization(p.transaction_id) is None


def test_a_card_error_that_quotes_the_card_number_is_scrubbed(reader_agent, insert, billing_server,
                                                             seeded_references):
    """A card whose AID is its own card number, refused: the reader's error names the AID it tried; what the
    cashier sees and the journal keeps has the number masked."""
    pan = PROFILES["aid_is_pan"].pan
    bill = reader_agent.flow.lookup(seeded_references[9])
    with insert("aid_is_pan"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c")
    assert result.status == "declined" and "no supported payment application" in result.message, result.message
    assert pan not in result.message and pan[:6] + "******" + pan[-4:] in result.message
    [p] = result.payments
    assert pan not in json.dumps(p.__dict__, default=str)
    assert_no_pan_in(reader_agent.config.state.dir, pan)


def test_the_cashier_cancel_stops_the_card_read(reader_agent, insert, billing_server, seeded_references):
    """Cancel pressed while the card is being read: no further command goes to the card, nothing is sent."""
    import threading

    cancel = threading.Event()

    def on_status(key: str) -> None:
        if key == "reading_card":
            cancel.set()

    bill = reader_agent.flow.lookup(seeded_references[2])
    with insert("slow") as link:
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c", cancel=cancel,
                                       on_status=on_status)
        seen = link.apdus
    assert result.status == "cancelled", result.message
    assert seen == 0
    [p] = result.payments
    assert reader_agent.client.get_authorization(p.transaction_id) is None


def test_a_zero_length_dol_entry_sends_nothing_for_it(reader_agent, insert, billing_server, seeded_references):
    bill = reader_agent.flow.lookup(seeded_references[3])
    with insert("dol_zero_length"):
        result = reader_agent.flow.pay([bill], method="card_reader", cashier_id="c")
    assert result.status == "approved", result.message


def test_guichet_pay_with_a_hostile_card_is_declined_in_one_line(billing_config, vpcd_reader, insert, billing_server,
                                                                 seeded_references, tmp_path):
    """`guichet pay --method card_reader` as the cashier runs it: a card whose PDOL asks for 271 bytes ends in
    one line, exit 1, `declined`; the bill is not blocked (a second card pays it)."""
    import json
    import os
    import subprocess
    import sys

    import config

    cfg = with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15))
    path = config.write_config(cfg, tmp_path / "guichet.toml")
    env = {k: v for k, v in os.environ.items() if k not in ("GUICHET_CRASHPOINT", "GUICHET_CONFIG")}
    env.update(GUICHET_CONFIG=str(path), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    ref = seeded_references[5]

    def pay() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guichet", "pay", ref, "--method", "card_reader", "--json"],
                              capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)

    with insert("pdol_huge"):
        out = pay()
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "declined" in out.stderr and "PDOL" in out.stderr and "Traceback" not in out.stderr
    assert json.loads(out.stdout)["state"] == "declined"
    with insert("cib"):
        again = pay()
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["state"] in ("approved", "uploaded")

"""Receipts by e-mail and SMS on real parts: the agent's outbox (outbox.db) and its receipt-send job in the one
scheduler, the sandbox billing server over HTTP on 127.0.0.1 really sending through an SMTP sink (aiosmtpd) and
to an SMS file. The link down when the cashier asks, a 404 before the upload, a refusal; the customer's address
gone from the store once the server took it, and never in a log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.context import AgentContext
from agent.outbox import Address, AddressError, Outbox, parse_address
from agent.scheduler import JobParts, Scheduler
from sandbox.billing.app import _EMAIL, _PHONE
from sandbox.billing.server import SandboxServer
from sandbox.smtp_sink import SmtpSink, body_text
from tests.conftest import BILLING_AGENCY, BILLING_TOKEN
from tests.core.conftest import with_changes
from ui.formatting import money
from ui.receipt import receipt_jobs, request_send

EMAIL = "amina.haddad@example.dz"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    with SmtpSink(tmp_path / "mail") as s:
        yield s


def _server(tmp_path: Path, **kw: Any) -> SandboxServer:
    return SandboxServer(tmp_path / "billing-server.db", token=BILLING_TOKEN, agency=BILLING_AGENCY, seed_bills=50,
                         **kw)


def _cfg(billing_config: Any, server: SandboxServer) -> Any:
    return with_changes(billing_config, server={"url": server.url})


def _job(ctx: AgentContext, cfg: Any) -> Scheduler:
    sched = Scheduler()
    receipt_jobs(sched, JobParts(cfg, ctx.journal, ctx.client))
    return sched


def _stored_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.glob("outbox.db*"))


def test_an_email_asked_while_the_link_was_down_reaches_the_customer(
    tmp_path: Path, billing_config: Any, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _server(tmp_path, smtp=sink.address) as server:
        cfg = _cfg(billing_config, server)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            bill = ctx.flow.lookup(server.references(status="unpaid")[0])
            [payment] = ctx.flow.pay([bill], method="cash", cashier_id="c0042").payments
            assert ctx.sync_worker().run_once().uploaded == 1
            number = payment.receipt_number
            server.stop()  # the link goes down

            request_send(cfg, number, f"  {EMAIL} ", language="fr")
            sched = _job(ctx, cfg)
            assert sched.run_once(["receipt-send"])["receipt-send"].offline
            box = Outbox.open(cfg.state.dir)
            [waiting] = box.waiting()
            assert waiting.address == EMAIL and waiting.state == "waiting"

            server.start()  # back, same port and database
            sched.link.retry_at = None
            assert sched.run_once(["receipt-send"])["receipt-send"].error is None
            [done] = box.requests(number)
            assert done.state == "sent" and done.address is None and done.hint == "a***@example.dz"
            box.close()

            [mail] = sink.wait_messages(1)
            assert mail["To"] == EMAIL and number in mail["Subject"]
            text = body_text(mail)
            assert number in text and bill.reference in text
            assert money(payment.amount + (payment.stamp_duty or 0), "DZD", "fr") in text
            assert "Reçu de paiement" in text
            assert server.sender is not None and server.sender.wait_idle(10) and not server.sender.failed

    # the address is personal data: not in the store's files once accepted, and in no log line
    assert EMAIL.encode() not in _stored_bytes(Path(cfg.state.dir))
    # (the SMTP sink's own library, aiosmtpd's "mail.log", is the customer's mail server: not ours)
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    assert ours and not [r for r in ours if EMAIL in r.getMessage()]


def test_an_sms_before_the_upload_waits_for_it_then_goes_to_the_gateway(
    tmp_path: Path, billing_config: Any
) -> None:
    sms = tmp_path / "sms.jsonl"
    with _server(tmp_path, sms_file=sms) as server:
        cfg = _cfg(billing_config, server)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            bill = ctx.flow.lookup(server.references(status="unpaid")[0])
            [payment] = ctx.flow.pay([bill], method="cash", cashier_id="c0042").payments
            number = payment.receipt_number
            request_send(cfg, number, "0661 23 45 67", language="ar")
            sched = _job(ctx, cfg)

            # not uploaded yet: the server answers 404 receipt_not_found and the request waits
            outcome = sched.run_once(["receipt-send"])["receipt-send"]
            assert outcome.error is None and not outcome.offline
            box = Outbox.open(cfg.state.dir)
            [req] = box.requests(number)
            assert req.state == "waiting" and req.address == "+213661234567" and "upload" in req.reason
            assert server.store.receipt_sends() == [] and not sms.exists()

            assert ctx.sync_worker().run_once().uploaded == 1
            sched.run_once(["receipt-send"])
            [req] = box.requests(number)
            assert req.state == "sent" and req.address is None
            box.close()
            assert server.sender is not None and server.sender.wait_idle(10)
            [line] = sms.read_text(encoding="utf-8").splitlines()
            record = json.loads(line)
            assert record["to"] == "+213661234567" and record["receipt_number"] == number
            assert number in record["text"] and "وصل الدفع" in record["text"]  # the language asked


def test_a_refused_address_needs_attention_and_is_dropped(tmp_path: Path, billing_config: Any) -> None:
    with _server(tmp_path) as server:
        cfg = _cfg(billing_config, server)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            bill = ctx.flow.lookup(server.references(status="unpaid")[0])
            [payment] = ctx.flow.pay([bill], method="cash", cashier_id="c0042").payments
            assert ctx.sync_worker().run_once().uploaded == 1
            box = Outbox.open(cfg.state.dir)
            # an address the server refuses (our own rules would not let the cashier type it)
            box.add(payment.receipt_number, Address("sms", "+12"))
            # and a receipt the server does not know although it is not in doubt here (404 once uploaded)
            box.add("ORAN-07-G1-999999", parse_address("22 123 456", "TN"))
            outcome = _job(ctx, cfg).run_once(["receipt-send"])["receipt-send"]
            assert outcome.error is None
            reasons = {r.receipt_number: r for r in box.attention()}
            assert "400 invalid_address" in reasons[payment.receipt_number].reason
            assert reasons[payment.receipt_number].address is None
            # not in this journal at all: the server's 404 stands (waiting would be forever)
            unknown = reasons["ORAN-07-G1-999999"]
            assert "not in this journal" in unknown.reason and unknown.address is None
            assert box.waiting() == []
            box.close()


def test_the_same_request_twice_is_one(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path)
    a = box.add("R-1", parse_address(EMAIL))
    assert box.add("R-1", parse_address(EMAIL.upper().lower())) == a
    assert len(box.waiting()) == 1
    assert (tmp_path / "outbox.db").stat().st_mode & 0o777 == 0o600
    box.close()


# -- the address rules ----------------------------------------------------------------------------------------

GOOD = {
    "0550123456": "+213550123456", "06 61 23 45 67": "+213661234567", "07.70.12.34.56": "+213770123456",
    "+213 550 12 34 56": "+213550123456", "00213661234567": "+213661234567",
    "+216 22 123 456": "+21622123456", "0021698123456": "+21698123456", "+216 50 123 456": "+21650123456",
    "0021641234567": "+21641234567", "client@example.dz": "client@example.dz",
    "a.b+c@mail.example.tn": "a.b+c@mail.example.tn",
}
BAD = ["", "0450123456", "055012345", "05501234567", "+213450123456", "31234567", "+216 30 123 456",
       "2212345", "client@", "@example.dz", "client@example", "client@@example.dz", "cl ient@example.dz",
       ".client@example.dz", "client..x@example.dz", "client@-example.dz", "client@example.d", "0661234567x",
       "+33612345678", "x" * 300]


@pytest.mark.parametrize(("text", "to"), GOOD.items())
def test_good_addresses(text: str, to: str) -> None:
    assert parse_address(text).to == to
    if to.startswith("+216"):  # a Tunisian counter reads its own numbers the same
        assert parse_address(text, "TN").to == to


@pytest.mark.parametrize(("text", "to"), [("22 123 456", "+21622123456"), ("98123456", "+21698123456")])
def test_short_tunisian_numbers_at_a_tunisian_counter(text: str, to: str) -> None:
    assert parse_address(text, "TN").to == to


@pytest.mark.parametrize("text", BAD)
def test_bad_addresses_say_the_rule(text: str) -> None:
    with pytest.raises(AddressError, match="e-mail address|mobile number|too long"):
        parse_address(text)


@given(st.text(max_size=300))
@example("0" * 10)
@example("+216" + "9" * 8)
@settings(deadline=None)  # no timing in the tests: a loaded machine is not a failure
def test_any_text_is_an_address_the_server_takes_or_one_error(text: str) -> None:
    try:
        address = parse_address(text)
    except AddressError as e:
        assert "\n" not in str(e)
        return
    # what we accept, the contract's server accepts: no request is sent to be refused for its syntax
    assert (_EMAIL if address.channel == "email" else _PHONE).match(address.to)
    assert len(address.to) <= 254


def test_a_server_answering_garbage_never_loses_the_request(tmp_path: Path, billing_config: Any) -> None:
    """Every broken answer of the sandbox's catalogue that applies to any /v1 request: the job never raises
    past the scheduler, and a request leaves the outbox only when the server has it (the answer, broken or
    not, came after the server recorded it) or with a named refusal."""
    from sandbox.billing.garbage import _GENERIC

    with _server(tmp_path) as server:
        cfg = _cfg(billing_config, server)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            bill = ctx.flow.lookup(server.references(status="unpaid")[0])
            [payment] = ctx.flow.pay([bill], method="cash", cashier_id="c0042").payments
            assert ctx.sync_worker().run_once().uploaded == 1
            number = payment.receipt_number
            box = Outbox.open(cfg.state.dir)
            for kind in sorted(_GENERIC):
                request_send(cfg, number, EMAIL)
                server.set_faults(garbage_rate=1.0, garbage_kinds=[kind], seed=1)
                _job(ctx, cfg).run_once(["receipt-send"])  # whatever it says, it says it as an Outcome
                req = box.requests(number)[-1]
                if req.state == "sent":
                    assert [r["address"] for r in server.store.receipt_sends()] == [EMAIL], kind
                elif req.state == "attention":  # a well-formed refusal: named, and the address dropped
                    assert req.reason and req.address is None, kind
                else:
                    assert req.address == EMAIL and len(box.waiting()) == 1, kind
            server.set_faults()
            _job(ctx, cfg).run_once(["receipt-send"])
            assert box.waiting() == []
            box.close()


def test_requests_waiting_for_an_upload_hold_no_newer_one_back(tmp_path: Path, billing_config: Any) -> None:
    with _server(tmp_path) as server:
        cfg = _cfg(billing_config, server)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            refs = server.references(status="unpaid")
            [older] = ctx.flow.pay([ctx.flow.lookup(refs[0])], method="cash", cashier_id="c0042").payments
            box = Outbox.open(cfg.state.dir)
            for i in range(25):  # more than one run sends, all for a receipt the server does not have yet
                box.add(older.receipt_number, parse_address(f"client{i}@example.dz"))
            sched = _job(ctx, cfg)
            assert sched.run_once(["receipt-send"])["receipt-send"].error is None
            assert {r.reason for r in box.waiting(100)} == {"waits for the payments' upload"}
            # a newer receipt the server has (its upload sent by hand, the older one's not)
            [newer] = ctx.flow.pay([ctx.flow.lookup(refs[1])], method="cash", cashier_id="c0042").payments
            ctx.journal.record_upload_results(ctx.client.post_batch([newer.to_api()]))
            box.add(newer.receipt_number, parse_address("late@example.dz"))
            sched.run_once(["receipt-send"])
            assert [r.state for r in box.requests(newer.receipt_number)] == ["sent"]
            assert len(box.waiting(100)) == 25
            # the older payment uploaded: its 25 requests go out, 20 a run
            assert ctx.sync_worker().run_once().uploaded >= 1
            assert sched.run_once(["receipt-send"])["receipt-send"].error is None
            assert box.waiting(100) == []
            box.close()

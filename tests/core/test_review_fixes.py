"""Behaviours that keep money safe when things go wrong in odd ways (from the safety review)."""

from __future__ import annotations

import pytest

import config
from agent.authorize import AuthOutcome, NothingSent
from agent.billing import BillingClient
from agent.errors import OfflineLimitExceeded, ServerUnreachable
from agent.journal import Journal, NewPayment
from agent.states import State
from agent.sync import REFUSALS_BEFORE_REJECT, SyncWorker
from tests.core.conftest import recorded_ids, with_changes
from tests.core.stub_server import StubServer, json_answer


class Raising:
    """An authorizer that fails the way a driver bug or a closed pipe does, after talking to the device."""

    method = "cash"

    def __init__(self, exc: BaseException, status_first: bool = False) -> None:
        self.exc, self.status_first = exc, status_first

    def authorize(self, req, *, cancel, on_status):
        if self.status_first:
            on_status("authorising")
            return AuthOutcome("approved", code="123456")
        raise self.exc


def test_an_authorizer_bug_is_unknown_not_cancelled(agent, seeded_references):
    agent.flow.authorizers["cash"] = Raising(RuntimeError("driver bug with 4111111111111111 in it"))
    result = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c")
    assert result.status == "unknown"
    [p] = result.payments
    assert "4111111111111111" not in (p.error or "") and "RuntimeError" in p.error
    assert agent.journal.blocking_payment(p.bill_reference) is not None


def test_nothing_sent_is_cancelled(agent, seeded_references):
    agent.flow.authorizers["cash"] = Raising(NothingSent("terminal port cannot be opened"))
    result = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c")
    assert result.status == "cancelled" and agent.journal.blocking_payment(seeded_references[0]) is None


def test_a_failing_status_display_cannot_change_the_outcome(agent, seeded_references):
    agent.flow.authorizers["cash"] = Raising(RuntimeError(), status_first=True)

    def broken_pipe(_key: str) -> None:
        raise BrokenPipeError

    result = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c",
                            on_status=broken_pipe)
    assert result.status == "approved" and agent.journal.queue_stats().count == 1


def test_a_copy_fetched_before_an_upload_still_counts_it(tmp_path):
    from agent.journal import now_precise

    j = Journal.open(tmp_path, terminal_id="T", agency_id="A")
    bill = {"reference": "123", "amount_due": 500, "currency": "DZD", "status": "unpaid", "version": 1}
    before = now_precise()  # the GET left before our uploader delivered the payment
    [p] = j.create([NewPayment(bill, 500)], currency="DZD", method="cash", cashier_id="c", captured_offline=False)
    j.transition(p.payment_id, State.AUTHORIZING, actor="c")
    j.transition(p.payment_id, State.APPROVED, actor="c")
    j.record_upload_results([{"payment_id": p.payment_id, "status": "accepted"}])
    assert j.pending_against("123", before) == 500
    assert j.pending_against("123", now_precise()) == 0


def test_offline_limits_count_payments_in_doubt(agent, billing_server, seeded_references, billing_config):
    agent.sync_worker().refresh_bills()
    billing_server.stop()
    agent.flow.authorizers["cash"] = Raising(RuntimeError("lost"))
    first = agent.flow.pay([agent.flow.lookup(seeded_references[0])], method="cash", cashier_id="c")
    assert first.status == "unknown"
    agent.flow.config = with_changes(billing_config, offline={"max_count": 1})
    with pytest.raises(OfflineLimitExceeded, match="1 payments are waiting"):
        agent.flow.pay([agent.flow.lookup(seeded_references[1])], method="cash", cashier_id="c")


@pytest.mark.parametrize("url", ["http://billing.example.dz/", "http://10.1.2.3:8765/"])
def test_plain_http_to_another_host_is_refused(url):
    with pytest.raises(config.ConfigError, match="server.url: plain http"):
        config.validate({"server": {"url": url}})


@pytest.mark.parametrize("value", [50000.0, 1e6, "50000"])
def test_money_limits_must_be_whole_minor_units(value):
    with pytest.raises(config.ConfigError, match="offline.max_payment_amount"):
        config.validate({"offline": {"max_payment_amount": value}})


def _client(url: str) -> BillingClient:
    return BillingClient(config.validate({"server": {"url": url, "token": "t"}}))


def test_redirects_are_never_followed_so_a_pan_cannot_travel_elsewhere():
    with StubServer(lambda m, p, b: json_answer(404, {})) as elsewhere, \
            StubServer(lambda m, p, b: (307, {"Location": elsewhere.url + "steal"}, b"")) as server:
        with pytest.raises(ServerUnreachable, match="redirect"):
            _client(server.url).authorize({"card": {"pan": "4111111111111111"}}, idempotency_key="k")
        assert elsewhere.requests == []


@pytest.mark.parametrize("body", [{}, {"approved": "yes"}, {"status": "pending"}])
def test_an_authorization_lookup_without_a_verdict_is_no_answer(body):
    with StubServer(lambda m, p, b: json_answer(200, body)) as server:
        with pytest.raises(ServerUnreachable, match="approved"):
            _client(server.url).get_authorization("pid")


def test_connection_refused_means_not_sent():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    with pytest.raises(ServerUnreachable) as e:
        _client(url).authorize({}, idempotency_key="k")
    assert e.value.sent is False


def test_one_payment_the_server_refuses_does_not_hold_back_the_queue(agent, billing_server, seeded_references):
    ids = [agent.flow.pay([agent.flow.lookup(r)], method="cash", cashier_id="c").payments[0].payment_id
           for r in seeded_references[:4]]
    poisoned = ids[1]
    forward = requests_forward(billing_server)

    def handler(method, path, body):
        if path.endswith("/payments/batch") and any(p["payment_id"] == poisoned for p in body["payments"]):
            return json_answer(400, {"error": {"code": "unknown_field", "message": "payments[0].x"}})
        return forward(method, path, body)

    with StubServer(handler) as proxy:
        cfg = with_changes(agent.config, server={"url": proxy.url})
        worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
        worker.refusal_spacing = 0  # refusals count once per REFUSAL_SPACING; here the rounds follow at once
        first = worker.run_once()
        assert first.uploaded == 3 and first.remaining == 1 and "refused" in (first.error or "")
        assert sorted(recorded_ids(billing_server)) == sorted(set(ids) - {poisoned})
        for _ in range(REFUSALS_BEFORE_REJECT - 1):
            report = worker.run_once()
    assert report.rejected == 1 and report.remaining == 0
    got = agent.journal.get(poisoned)
    assert got.state == "rejected" and got.error.startswith("unknown_field")


def requests_forward(server):
    import requests

    def forward(method, path, body):
        r = requests.request(method, server.url.rstrip("/") + path, json=body, headers=server.headers(), timeout=5)
        return r.status_code, {"Content-Type": r.headers.get("Content-Type", "")}, r.content

    return forward


def test_a_hand_debit_waits_for_the_counter(guichet, billing_config):
    """`guichet tpe pay` sends real money outside the journal: never while the UI or `guichet pay` runs."""
    from agent.locks import CounterLock

    with CounterLock(billing_config.state.dir):
        r = guichet("tpe", "pay", "--port", "/dev/null-terminal", "--amount", "10.00")
    assert r.returncode == 1 and "payment taker" in r.stderr and "stop it" in r.stderr

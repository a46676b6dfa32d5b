"""Whole-request 4xx answers to a batch (issue 12, review item 2): the contract says they are about the request
(bad JSON, auth, too many items), so a server or proxy that answers one to every batch must never turn the
outbox into `rejected` (final). Only a payment refused on its own, for a code about it, while the server takes
the others, in refusals spread over time, ends needing attention."""

from __future__ import annotations

from typing import Any

from agent.billing import BillingClient
from agent.sync import REFUSAL_SPACING, REFUSALS_BEFORE_REJECT, SyncWorker
from tests.core.conftest import recorded_ids, with_changes
from tests.core.stub_server import StubServer, json_answer
from tests.core.test_review_fixes import requests_forward

ROUNDS = 3 * REFUSALS_BEFORE_REJECT


class Clock:
    """The worker's monotonic clock, moved by hand: refusals count once per REFUSAL_SPACING."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pay_cash(agent: Any, refs: list[str]) -> list[str]:
    return [agent.flow.pay([agent.flow.lookup(r)], method="cash", cashier_id="c").payments[0].payment_id
            for r in refs]


def _worker(agent: Any, url: str) -> tuple[SyncWorker, Clock]:
    cfg = with_changes(agent.config, server={"url": url})
    worker = SyncWorker(cfg, agent.journal, BillingClient(cfg))
    clock = Clock()
    worker.clock = clock
    return worker, clock


def test_a_contract_400_to_every_batch_for_many_rounds_rejects_nothing(agent, billing_server, seeded_references):
    ids = _pay_cash(agent, seeded_references[:3])
    billing_server.set_faults(garbage_rate=1.0, garbage_kinds=["batch_contract_4xx"], garbage_record="never")
    worker, clock = _worker(agent, billing_server.url)
    for _ in range(ROUNDS):  # bounded; far apart, as a server broken for an afternoon
        report = worker.run_once()
        assert report.error and "invalid_json" in report.error and report.rejected == 0
        clock.now += 2 * REFUSAL_SPACING
    assert {agent.journal.get(i).state for i in ids} == {"approved"}  # kept, never rejected
    billing_server.set_faults()
    report = worker.run_once()
    assert report.error is None and report.uploaded == 3 and sorted(recorded_ids(billing_server)) == sorted(ids)


def test_a_server_refusing_every_batch_for_any_payment_code_rejects_nothing(agent, billing_server, seeded_references):
    """A code that could be about a payment, given to every batch and every payment alone: the server takes
    nothing, so no payment is to blame."""
    ids = _pay_cash(agent, seeded_references[:3])
    with StubServer(lambda m, p, b: json_answer(400, {"error": {"code": "invalid_payment", "message": "no"}})) as stub:
        worker, clock = _worker(agent, stub.url)
        for _ in range(ROUNDS):
            report = worker.run_once()
            assert report.error and report.rejected == 0
            clock.now += 2 * REFUSAL_SPACING
    assert {agent.journal.get(i).state for i in ids} == {"approved"}


def test_a_poisoned_payment_among_good_ones_needs_attention_only_after_refusals_spread_over_time(
        agent, billing_server, seeded_references):
    ids = _pay_cash(agent, seeded_references[:4])
    poisoned = ids[2]
    forward = requests_forward(billing_server)

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/payments/batch") and any(p["payment_id"] == poisoned for p in body["payments"]):
            return json_answer(400, {"error": {"code": "unknown_field", "message": "payments[0].x: unknown field"}})
        return forward(method, path, body)

    with StubServer(handler) as stub:
        worker, clock = _worker(agent, stub.url)
        first = worker.run_once()
        assert first.uploaded == 3 and first.remaining == 1 and "refused" in (first.error or "")
        for _ in range(ROUNDS):  # refused again and again within minutes: still kept
            assert worker.run_once().rejected == 0
        assert agent.journal.get(poisoned).state == "approved"
        for _ in range(REFUSALS_BEFORE_REJECT - 1):
            clock.now += REFUSAL_SPACING
            report = worker.run_once()
    assert report.rejected == 1 and report.remaining == 0 and report.error is None
    got = agent.journal.get(poisoned)
    assert got.state == "rejected" and got.error.startswith("unknown_field")
    assert sorted(recorded_ids(billing_server)) == sorted(set(ids) - {poisoned})

"""2,000 queued payments reach the server exactly once under each of the sandbox's fault modes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from agent.billing import BillingClient
from agent.journal import DB_NAME, Journal, NewPayment
from agent.states import State
from agent.sync import Backoff, SyncWorker
from sandbox.billing.faults import GARBAGE_KINDS
from tests.core.conftest import with_changes

N = 2000


@pytest.fixture(scope="module")
def backlog(tmp_path_factory) -> Path:
    """A journal holding 2,000 approved payments (10 per seeded bill), built once and copied per test."""
    from sandbox.billing.seed import generate_bills

    refs = [b["reference"] for b in generate_bills(200, "ORAN-07", seed=1) if b["status"] == "unpaid"]
    d = tmp_path_factory.mktemp("backlog")
    j = Journal.open(d, terminal_id="ORAN-07-G1", agency_id="ORAN-07")
    for i in range(N):
        bill = {"reference": refs[i % len(refs)], "amount_due": 10_000, "currency": "DZD", "status": "unpaid",
                "version": 1}
        [p] = j.create([NewPayment(bill, 100 + i)], currency="DZD", method="cash", cashier_id="c0042",
                       captured_offline=True)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
        j.transition(p.payment_id, State.APPROVED, actor="c0042", authorization={"code": None})
    j.close()
    return d / DB_NAME


FAULTS = {
    "latency": {"latency_ms": 40},
    "error_500": {"error_rate": 0.3},
    "unavailable_503_retry_after": {"unavailable_rate": 0.3, "retry_after": 1},
    "drop_after_commit": {"drop_after_commit_rate": 0.3},
    "garbage_body": {"garbage_rate": 0.3},
    "wrong_content_type": {"wrong_content_type_rate": 0.3},
    # The sandbox's catalogue of broken answers (issue 12), half of them given for batches it never recorded.
    # Left out: a Retry-After far ahead (the agent waits the 300 s cap, as asked).
    "garbage_catalogue": {"garbage_rate": 0.3, "drip_seconds": 3, "garbage_kinds": [
        k for k in GARBAGE_KINDS if k not in ("retry_after_huge", "retry_after_date")]},
}


@pytest.mark.parametrize("mode", list(FAULTS))
def test_backlog_arrives_exactly_once(mode, backlog, billing_server, billing_config) -> None:
    cfg = with_changes(billing_config, sync={"batch_size": 250})
    shutil.copy(backlog, Path(cfg.state.dir) / DB_NAME)
    j = Journal.open(cfg.state.dir, terminal_id=cfg.terminal.id, agency_id=cfg.terminal.agency_id)
    expected = {p.payment_id for p in j.outbox_batch(N + 1)}
    assert len(expected) == N
    billing_server.set_faults(**FAULTS[mode], seed=11)
    worker = SyncWorker(cfg, j, BillingClient(cfg))
    worker.backoff = Backoff(base=0.01, cap=0.2)  # Retry-After still sets the floor
    waited_for_retry_after = []
    for _ in range(200):  # bounded: each round uploads or fails one batch at worst
        report, delay = worker.step()
        if report.retry_after:
            waited_for_retry_after.append(delay >= report.retry_after)
        if report.error is None and report.remaining == 0:
            break
        time.sleep(delay)
    recorded = billing_server.recorded_payments()
    assert len(recorded) == N and {p["payment_id"] for p in recorded} == expected
    assert {p.state for p in j.list()} == {"uploaded"}
    if mode != "latency":  # latency is not counted as an injected fault; the others must have fired
        assert sum(billing_server.fault_status()["injected"].values()) > 0, "the fault mode never fired"
    assert all(waited_for_retry_after)
    j.close()

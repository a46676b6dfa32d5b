"""`guichet run --headless` with one payment the server refuses among good ones (issue 12, review item 3): the
refused batch is sent again one payment at a time over the following steps, the good ones arrive, the refused
one is kept and the status says why."""

from __future__ import annotations

import time
from typing import Any

from agent.journal import Journal
from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL
from tests.core.stub_server import StubServer, json_answer
from tests.core.test_review_fixes import requests_forward
from tests.service.conftest import write_config
from tests.service.test_hostile_service import _approved


def test_one_refused_payment_does_not_block_the_headless_uploads(
        tmp_path, billing_server, seeded_references, notify_socket, spawn):
    state = tmp_path / "state"
    ids = _approved(state, billing_server, seeded_references[:4])
    poisoned = ids[1]
    forward = requests_forward(billing_server)

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/payments/batch") and any(p["payment_id"] == poisoned for p in body["payments"]):
            return json_answer(400, {"error": {"code": "unknown_field", "message": "payments[0].x: unknown field"}})
        return forward(method, path, body)

    with StubServer(handler) as stub:
        cfg = write_config(tmp_path / "g.toml", stub.url, state,
                           sync={"interval": 0.2, "heartbeat": 30, "bill_refresh": 30, "batch_size": 100},
                           server={"timeout": 2})
        agent = spawn(cfg, notify_socket.path)
        notify_socket.wait_for(lambda m: "READY=1" in m)
        good = set(ids) - {poisoned}
        for _ in range(300):  # bounded: ~60 s of 0.2 s polls
            with Journal.open(state, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
                states = {p.payment_id: p.state for p in j.list()}
            if all(states[i] == "uploaded" for i in good) or agent.proc.poll() is not None:
                break
            time.sleep(0.2)
        assert agent.proc.poll() is None, "the agent exited:\n" + "".join(agent.stderr)
        assert all(states[i] == "uploaded" for i in good), states
        assert states[poisoned] == "approved"  # kept for a later round, not rejected at once
        status = notify_socket.wait_for(lambda m: "upload refused" in m)
        assert "1 payment(s) refused by the server" in status
        assert agent.terminate() == 0
    assert sorted(p["payment_id"] for p in billing_server.recorded_payments()) == sorted(good)
    assert "Traceback" not in "".join(agent.stderr)

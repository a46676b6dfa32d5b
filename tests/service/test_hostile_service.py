"""`guichet run --headless` outlives a billing server that answers garbage (issue 12), then uploads once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agent.journal import Journal, NewPayment
from agent.states import State
from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL
from tests.core.stub_server import StubServer, json_answer
from tests.core.test_review_fixes import requests_forward
from tests.service.conftest import write_config

DEEP = b"[" * 100_000 + b"]" * 100_000


def _approved(state: Path, server: Any, refs: list[str]) -> list[str]:
    ids = []
    with Journal.open(state, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
        for ref in refs:
            bill = server.bill(ref)
            [p] = j.create([NewPayment(bill=bill, amount=bill["amount_due"])], currency="DZD", method="cash",
                           cashier_id="c0042", captured_offline=True)
            j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
            j.transition(p.payment_id, State.APPROVED, actor="c0042")
            ids.append(p.payment_id)
    return ids


def test_the_headless_agent_survives_garbage_answers_and_uploads_once_the_server_is_sane(
        tmp_path, billing_server, seeded_references, notify_socket, spawn):
    state = tmp_path / "state"
    ids = _approved(state, billing_server, seeded_references[:3])
    forward = requests_forward(billing_server)
    # Per endpoint, the broken answers served in turn (then the real server's): the three of the issue.
    script: dict[str, list[tuple[int, dict[str, str], bytes]]] = {
        "batch": [
            json_answer(200, {"results": [{"payment_id": i, "status": "rejected", "error": "invalid_payment"}
                                          for i in ids]}),
            (200, {"Content-Type": "application/json"}, DEEP),
        ],
        "feed": [json_answer(200, {"items": [{**billing_server.bill(seeded_references[5]), "version": 2**70}],
                                   "next_cursor": "c"})],
        "heartbeat": [(200, {"Content-Type": "application/json"}, DEEP)],
    }
    served: list[str] = []
    sane = {"on": False}

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        kind = ("batch" if path.endswith("/payments/batch") else "heartbeat" if path.endswith("/heartbeat")
                else "feed" if path.startswith("/v1/bills?") else "")
        if not sane["on"] and script.get(kind):
            served.append(kind)
            if kind == "batch":
                forward(method, path, body)  # recorded, and the answer lost in garbage: replays must be duplicates
            return script[kind].pop(0)
        return forward(method, path, body)

    with StubServer(handler) as stub:
        cfg = write_config(tmp_path / "g.toml", stub.url, state,
                           sync={"interval": 0.2, "heartbeat": 0.3, "bill_refresh": 0.3, "batch_size": 100},
                           server={"timeout": 2})
        agent = spawn(cfg, notify_socket.path)
        notify_socket.wait_for(lambda m: "READY=1" in m)
        for _ in range(300):  # bounded: ~60 s of 0.2 s polls
            if len(served) == 4 or agent.proc.poll() is not None:
                break
            time.sleep(0.2)
        assert agent.proc.poll() is None, "the agent exited:\n" + "".join(agent.stderr)
        assert sorted(served) == ["batch", "batch", "feed", "heartbeat"]
        for _ in range(100):  # bounded: the log lines follow the answers closely
            logged = "".join(agent.stderr)
            if "bill skipped" in logged and logged.count("nested deeper than 64 levels") >= 2:
                break
            time.sleep(0.1)
        assert "batch answer: results[0].error: should be a valid dictionary" in logged
        assert "heartbeat: billing server: answer 200 nested deeper than 64 levels" in logged
        assert "items[0].version: integer above 2**63-1; bill skipped" in logged
        sane["on"] = True
        for _ in range(600):  # bounded: the backoff after four failures stays under 16 s
            with Journal.open(state, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
                states = {p.payment_id: p.state for p in j.list()}
            if all(states[i] == "uploaded" for i in ids) or agent.proc.poll() is not None:
                break
            time.sleep(0.2)
        assert agent.proc.poll() is None, "the agent exited:\n" + "".join(agent.stderr)
        assert all(states[i] == "uploaded" for i in ids), states
        assert agent.terminate() == 0
    recorded = billing_server.recorded_payments()
    assert sorted(p["payment_id"] for p in recorded) == sorted(ids)  # each exactly once
    assert "Traceback" not in "".join(agent.stderr)
    assert not any("payment" in line and "rejected" in line for line in agent.stderr)
    json.dumps(states)  # the states read back are plain strings

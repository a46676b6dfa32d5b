"""`guichet run --headless` outlives a journal that is busy for a while (review, low item): a transient
JournalError (database locked, disk full) is logged and backed off; only a damaged journal stops the agent."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from agent.journal import DB_NAME, Journal
from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL
from tests.core.stub_server import StubServer
from tests.core.test_review_fixes import requests_forward
from tests.service.conftest import write_config
from tests.service.test_hostile_service import _approved

HOLD = 13.0  # seconds the test holds the journal's write lock: past its 10 s busy timeout (agent/storage.py)


def test_a_journal_busy_past_the_busy_timeout_does_not_stop_the_agent(
        tmp_path, billing_server, seeded_references, notify_socket, spawn):
    state = tmp_path / "state"
    ids = _approved(state, billing_server, seeded_references[:2])
    forward = requests_forward(billing_server)
    held: list[sqlite3.Connection] = []
    released = threading.Event()

    def release() -> None:
        held[0].execute("ROLLBACK")
        held[0].close()
        released.set()

    def handler(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/payments/batch") and not held:
            # A supervisor's command takes the journal's write lock while the batch is on the server.
            conn = sqlite3.connect(state / DB_NAME, isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN EXCLUSIVE")
            held.append(conn)
            threading.Timer(HOLD, release).start()
        return forward(method, path, body)

    with StubServer(handler) as stub:
        cfg = write_config(tmp_path / "g.toml", stub.url, state,
                           sync={"interval": 0.2, "heartbeat": 30, "bill_refresh": 30}, server={"timeout": 2})
        agent = spawn(cfg, notify_socket.path)
        notify_socket.wait_for(lambda m: "READY=1" in m)
        for _ in range(300):  # bounded: ~60 s of 0.2 s polls
            time.sleep(0.2)
            if agent.proc.poll() is not None:
                break
            if not released.is_set():
                continue
            with Journal.open(state, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
                states = {p.payment_id: p.state for p in j.list()}
            if all(states[i] == "uploaded" for i in ids):
                break
        assert agent.proc.poll() is None, "the agent exited:\n" + "".join(agent.stderr)
        assert held and all(states[i] == "uploaded" for i in ids), states
        assert "database is locked" in "".join(agent.stderr) or "busy" in "".join(agent.stderr)
        assert agent.terminate() == 0
    assert sorted(p["payment_id"] for p in billing_server.recorded_payments()) == sorted(ids)  # once each
    assert "Traceback" not in "".join(agent.stderr)

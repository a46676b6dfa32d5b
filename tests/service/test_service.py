"""`guichet run --headless` as systemd runs it: sd_notify over a real AF_UNIX socket, watchdog, SIGTERM."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from agent.journal import Journal, NewPayment
from agent.states import State
from tests.conftest import BILLING_AGENCY, BILLING_TERMINAL

WATCHDOG_USEC = 400_000  # 0.4 s: the agent pings every 0.2 s


def seed_journal(state: Path, server, refs: list[str], approved: int) -> dict[str, list[str]]:
    """Payments as the cashier UI leaves them: `approved` ones waiting for upload, plus one `authorizing`
    and one `created` left by a crash of the process that took them."""
    ids: dict[str, list[str]] = {"approved": [], "authorizing": [], "created": []}
    with Journal.open(state, terminal_id=BILLING_TERMINAL, agency_id=BILLING_AGENCY) as j:
        for i, ref in enumerate(refs[: approved + 2]):
            bill = server.bill(ref)
            [p] = j.create([NewPayment(bill=bill, amount=bill["amount_due"])], currency="DZD", method="cash",
                           cashier_id="c0042", captured_offline=False)
            if i == approved + 1:
                ids["created"].append(p.payment_id)
                continue
            j.transition(p.payment_id, State.AUTHORIZING, actor="c0042")
            if i == approved:
                ids["authorizing"].append(p.payment_id)
                continue
            j.transition(p.payment_id, State.APPROVED, actor="c0042")
            ids["approved"].append(p.payment_id)
    return ids


def test_ready_status_and_periodic_watchdog(tmp_path, billing_server, notify_socket, spawn):
    from tests.service.conftest import write_config

    cfg = write_config(tmp_path / "g.toml", billing_server.url, tmp_path / "state",
                       sync={"interval": 0.2, "heartbeat": 0.3})
    agent = spawn(cfg, notify_socket.path, watchdog_usec=WATCHDOG_USEC)
    ready = notify_socket.wait_for(lambda m: "READY=1" in m)
    assert ready.splitlines()[0] == "READY=1"
    assert any(line.startswith("STATUS=") for line in ready.splitlines())
    # The working loop keeps pinging: several WATCHDOG=1 within a few timeouts.
    pings = 0
    while pings < 5:
        notify_socket.wait_for(lambda m: m == "WATCHDOG=1", timeout=10)
        pings += 1
    # STATUS describes the link and the queue once the server answered.
    online = notify_socket.seen_or_wait(lambda m: m.startswith("STATUS=online"))
    assert "0 unsent" in online
    assert agent.terminate() == 0
    notify_socket.drain()
    assert any(m.startswith("STOPPING=1") for m in notify_socket.messages)
    assert "stopped cleanly" in "".join(agent.stderr)


def test_status_reports_the_link_down(tmp_path, notify_socket, spawn):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    from tests.service.conftest import write_config

    cfg = write_config(tmp_path / "g.toml", url, tmp_path / "state")
    agent = spawn(cfg, notify_socket.path)
    notify_socket.wait_for(lambda m: "READY=1" in m)
    down = notify_socket.wait_for(lambda m: m.startswith("STATUS=offline since"))
    assert "unreachable" in down and "retry in" in down
    assert agent.terminate() == 0


def test_a_hung_worker_stops_the_watchdog_pings(tmp_path, billing_server, notify_socket, spawn):
    from tests.service.conftest import write_config

    cfg = write_config(tmp_path / "g.toml", billing_server.url, tmp_path / "state",
                       sync={"interval": 0.2, "heartbeat": 0.3})
    agent = spawn(cfg, notify_socket.path, watchdog_usec=WATCHDOG_USEC, env={"GUICHET_TEST_HANG_AFTER": "4"})
    notify_socket.wait_for(lambda m: "READY=1" in m)
    notify_socket.wait_for(lambda m: m == "WATCHDOG=1")
    agent.wait_line("hanging on purpose")
    notify_socket.drain()  # pings sent before the hang
    # Five watchdog timeouts without a ping: systemd would now kill and restart the agent.
    after = notify_socket.collect(5 * WATCHDOG_USEC / 1e6)
    assert "WATCHDOG=1" not in after
    assert agent.proc.poll() is None  # alive but silent: exactly what the watchdog is for


def test_sigterm_mid_upload_leaves_the_journal_consistent(tmp_path, billing_server, seeded_references,
                                                          notify_socket, spawn):
    from tests.service.conftest import write_config

    state = tmp_path / "state"
    ids = seed_journal(state, billing_server, seeded_references, approved=40)
    # One payment per request: SIGTERM lands while the queue is being uploaded.
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state, sync={"batch_size": 1, "interval": 0.2})
    agent = spawn(cfg, notify_socket.path)
    notify_socket.wait_for(lambda m: "READY=1" in m)
    agent.wait_line("uploaded 1,")
    assert agent.terminate() == 0
    notify_socket.drain()
    assert any(m.startswith("STOPPING=1") for m in notify_socket.messages)

    db = sqlite3.connect(state / "journal.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(db.execute("SELECT payment_id, state FROM payments").fetchall())
        outbox = {r[0] for r in db.execute("SELECT payment_id FROM outbox")}
    finally:
        db.close()
    # Nothing left mid-transition: the crash leftovers were settled without guessing, at start.
    assert not [p for p, s in states.items() if s in ("created", "authorizing")]
    assert states[ids["authorizing"][0]] == "unknown"
    assert states[ids["created"][0]] == "cancelled"
    # Every approved payment is either uploaded (and on the server) or still queued: none lost, none doubled.
    recorded = {p["payment_id"] for p in billing_server.recorded_payments()}
    uploaded = {p for p in ids["approved"] if states[p] == "uploaded"}
    waiting = {p for p in ids["approved"] if states[p] == "approved"}
    assert uploaded | waiting == set(ids["approved"])
    assert uploaded, "the agent uploaded nothing before SIGTERM"
    assert uploaded <= recorded
    assert waiting == outbox
    assert not (recorded - set(ids["approved"]))


def test_a_second_agent_on_the_same_journal_refuses_to_start(tmp_path, billing_server, notify_socket, spawn):
    from tests.service.conftest import write_config

    cfg = write_config(tmp_path / "g.toml", billing_server.url, tmp_path / "state")
    first = spawn(cfg, notify_socket.path)
    notify_socket.wait_for(lambda m: "READY=1" in m)
    second = spawn(cfg, None)
    assert second.proc.wait(30) == 1
    second.kill()
    assert "another uploader" in "".join(second.stderr)
    assert first.terminate() == 0


def test_a_corrupt_journal_fails_with_one_clear_line(tmp_path, notify_socket, spawn):
    from tests.service.conftest import write_config

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "journal.db").write_bytes(b"this is not an SQLite database at all" * 100)
    cfg = write_config(tmp_path / "g.toml", "http://127.0.0.1:9/", state)
    agent = spawn(cfg, notify_socket.path)
    assert agent.proc.wait(30) == 1
    agent.kill()
    assert "corrupt" in "".join(agent.stderr)
    notify_socket.drain()
    assert not any("READY=1" in m for m in notify_socket.messages)
    assert any(m.startswith("STATUS=failed") for m in notify_socket.messages)
    assert (state / "journal.db").read_bytes().startswith(b"this is not")  # left untouched


def test_a_bad_config_is_a_usage_error(tmp_path, spawn):
    cfg = tmp_path / "g.toml"
    cfg.write_text('[sync]\nbatch_size = 0\n')
    agent = spawn(cfg, None)
    assert agent.proc.wait(30) == 2
    agent.kill()
    assert "sync.batch_size" in "".join(agent.stderr)

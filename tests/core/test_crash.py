"""SIGKILL at every journal transition and during upload, then restart: nothing lost, nothing duplicated.

The agent is a real subprocess (`guichet pay`, `guichet sync --once`, `guichet queue settle`) that kills
itself with SIGKILL at the named point (agent/crashpoints.py), exactly where a power cut would stop it.
"Restart" is the next agent process claiming the journal: it settles leftovers without guessing.
"""

from __future__ import annotations

import json
import signal

import pytest

from agent.cashiers import CashierStore
from agent.journal import Journal
from tests.core.conftest import recorded_ids

KILLED = -signal.SIGKILL


def journal_of(cfg) -> Journal:
    return Journal.open(cfg.state.dir, terminal_id=cfg.terminal.id, agency_id=cfg.terminal.agency_id)


def states(cfg) -> list[str]:
    j = journal_of(cfg)
    try:
        return [p.state for p in j.list()]
    finally:
        j.close()


@pytest.fixture
def settler(billing_config) -> str:
    """The cashier of this counter who settles from the ticket (`queue settle --cashier` must name one)."""
    store = CashierStore.open(billing_config.state.dir)
    try:
        store.add("c0042", "Amel B.", "123456", role="cashier", actor="setup")
    finally:
        store.close()
    return "c0042"


def restart(guichet) -> None:
    r = guichet("sync", "--once")
    assert r.returncode == 0, r.stderr


# point in `guichet pay` -> the state the payment is in once a new process has recovered the journal
PAY_POINTS = [
    ("journal.create.before_commit", []),  # nothing was written: nothing to recover
    ("journal.create.after_commit", ["cancelled"]),  # written, never sent for money
    ("journal.authorizing.before_commit", ["cancelled"]),
    ("journal.authorizing.after_commit", ["unknown"]),  # may have been charged: never guessed
    ("journal.approved.before_commit", ["unknown"]),
    ("journal.approved.after_commit", ["uploaded"]),  # approved and queued: the restart uploads it
]


@pytest.mark.parametrize(("point", "after"), PAY_POINTS, ids=[p for p, _ in PAY_POINTS])
def test_kill_during_payment(point, after, guichet, billing_config, billing_server, seeded_references,
                             settler) -> None:
    ref = seeded_references[0]
    r = guichet("pay", ref, "--method", "cash", "--json", "--no-upload", env={"GUICHET_CRASHPOINT": point})
    assert r.returncode == KILLED, (r.returncode, r.stderr)
    restart(guichet)
    assert states(billing_config) == after
    recorded = recorded_ids(billing_server)
    assert len(recorded) == (1 if after == ["uploaded"] else 0)
    if after == ["unknown"]:
        # the bill stays blocked until the cashier settles it from the ticket; then it is uploaded once
        again = guichet("pay", ref, "--method", "cash")
        assert again.returncode == 1 and "unknown outcome" in again.stderr
        [p] = json.loads(guichet("queue", "list", "--json").stdout)
        s = guichet("queue", "settle", p["payment_id"], "--approved", "--code", "TICKET1", "--cashier", settler)
        assert s.returncode == 0, s.stderr
        restart(guichet)
        assert states(billing_config) == ["uploaded"]
        assert recorded_ids(billing_server) == [p["payment_id"]]
    elif after in ([], ["cancelled"]):
        ok = guichet("pay", ref, "--method", "cash", "--json")  # nothing taken: the bill can be paid
        assert ok.returncode == 0, ok.stderr
        assert len(recorded_ids(billing_server)) == 1


UPLOAD_POINTS = [
    "sync.before_post",  # the server never saw it
    "sync.after_post",  # the server recorded it, we did not: the replay comes back `duplicate`
    "sync.record.before_commit",
    "sync.record.after_commit",
]


@pytest.mark.parametrize("point", UPLOAD_POINTS)
def test_kill_during_upload(point, guichet, billing_config, billing_server, seeded_references) -> None:
    ids = []
    for ref in seeded_references[:3]:
        r = guichet("pay", ref, "--method", "cash", "--json", "--no-upload")
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["payment_id"])
    r = guichet("sync", "--once", env={"GUICHET_CRASHPOINT": point})
    assert r.returncode == KILLED
    restart(guichet)
    assert states(billing_config) == ["uploaded"] * 3
    recorded = recorded_ids(billing_server)
    assert sorted(recorded) == sorted(ids)  # each exactly once
    if point in ("sync.after_post", "sync.record.before_commit"):
        assert all(p["duplicates"] == 1 for p in billing_server.recorded_payments())


SETTLE_POINTS = [("journal.approved.before_commit", "unknown"), ("journal.approved.after_commit", "approved")]


@pytest.mark.parametrize(("point", "after"), SETTLE_POINTS, ids=[p for p, _ in SETTLE_POINTS])
def test_kill_while_settling_an_unknown_payment(point, after, guichet, billing_config, billing_server,
                                                 seeded_references, settler) -> None:
    r = guichet("pay", seeded_references[0], "--method", "cash", "--no-upload",
                env={"GUICHET_CRASHPOINT": "journal.authorizing.after_commit"})
    assert r.returncode == KILLED
    restart(guichet)
    [p] = json.loads(guichet("queue", "list", "--json").stdout)
    settle = ("queue", "settle", p["payment_id"], "--approved", "--code", "T1", "--cashier", settler)
    r = guichet(*settle, env={"GUICHET_CRASHPOINT": point})
    assert r.returncode == KILLED
    assert states(billing_config) == [after]
    if after == "unknown":
        assert guichet(*settle).returncode == 0
    restart(guichet)
    assert recorded_ids(billing_server) == [p["payment_id"]]

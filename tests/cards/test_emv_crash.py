"""SIGKILL in the middle of an EMV transaction (issue 14): `guichet pay --method card_reader` is a real process
that kills itself (agent.crashpoints) between the first GENERATE AC and the acquirer's answer, or between the
answer and the second GENERATE AC. After a restart the payment is `unknown`, the bill is blocked (never charged
twice), and the acquirer's record settles it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import config
from agent.context import AgentContext
from agent.errors import GuichetError
from sandbox.cards.profiles import sandbox_cards_config, sandbox_emv_config
from tests.core.conftest import with_changes

KILLED = -signal.SIGKILL


def _sandbox(server, what: str) -> list[dict]:
    r = requests.get(server.url + f"_sandbox/{what}", headers=server.admin_headers(), timeout=5)
    r.raise_for_status()
    return r.json()["items"]


@pytest.fixture
def emv_cfg(billing_config, vpcd_reader):
    return with_changes(billing_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                        emv=sandbox_emv_config())


def _guichet(path: Path, *args: str, point: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GUICHET_CRASHPOINT", None)
    if point:
        env["GUICHET_CRASHPOINT"] = point
    return subprocess.run([sys.executable, "-m", "guichet", "--config", str(path), *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize(("point", "acquirer_saw_it"), [("card_reader.before_request", False),
                                                       ("card_reader.before_completion", True)])
def test_sigkill_mid_transaction_ends_unknown_and_is_never_charged_twice(emv_cfg, insert, billing_server,
                                                                         seeded_references, tmp_path, point,
                                                                         acquirer_saw_it):
    path = config.write_config(emv_cfg, tmp_path / "guichet.toml")
    ref = seeded_references[0]
    with insert("cib"):
        r = _guichet(path, "pay", ref, "--method", "card_reader", "--json", "--no-upload", point=point)
    assert r.returncode == KILLED, (r.returncode, r.stderr)
    # A new process recovers the journal: the payment turns unknown with a `timeout` reversal queued, which the
    # reversals job sends at once (sync --once runs every job).
    assert _guichet(path, "sync", "--once").returncode in (0, 1)
    [p] = json.loads(_guichet(path, "queue", "list", "--all", "--json").stdout)
    with AgentContext.open(emv_cfg, ["card_reader"], take_payments=True) as agent:
        tid = agent.journal.get(p["payment_id"]).transaction_id
        assert (agent.client.get_authorization(tid) is not None) == acquirer_saw_it
    if acquirer_saw_it:
        # approved by the acquirer, never completed by the card (no TC in the journal): the approval is reversed
        # and the payment declined, never settled approved on the server's record alone (review 7, finding 6)
        assert p["state"] == "declined"
        [auth] = [a for a in _sandbox(billing_server, "authorizations") if a["payment_id"] == tid]
        assert auth["reversed"] and auth["reversal_reason"] == "timeout"
        with insert("cib"):  # the customer was not charged: the bill can be paid, and is charged once
            again = _guichet(path, "pay", ref, "--method", "card_reader", "--json")
        assert again.returncode == 0, again.stderr
        paid = [i for i in _sandbox(billing_server, "payments") if i["bill_reference"] == ref]
        assert len(paid) == 1 and paid[0]["payment_id"] == json.loads(again.stdout)["payment_id"]
    else:
        # the request never left: a 404 this soon is not believed; the bill stays blocked, nothing charged
        assert p["state"] == "unknown"
        with insert("cib"):
            again = _guichet(path, "pay", ref, "--method", "card_reader")
        assert again.returncode == 1 and "unknown outcome" in again.stderr
        with AgentContext.open(emv_cfg, ["card_reader"], take_payments=True) as agent:
            with pytest.raises(GuichetError, match="ask again in"):
                agent.flow.resolve_unknown_online(p["payment_id"])
            assert agent.journal.get(p["payment_id"]).state == "unknown"

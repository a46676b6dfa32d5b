"""Concert V3 / Caisse-AP through the agent: the ``card_terminal`` authorizer's outcome for each terminal
behaviour, a bare address with ``protocol = "V3"``, ``guichet tpe`` and ``guichet sandbox tpe --protocol v3``
as a technician runs them. ``guichet pay`` end to end over V3 is in test_pay_e2e.py, with E+."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from agent.authorizers.tpe import TpeAuthorizer
from sandbox.tpe import TEST_PANS
from tests.tpe.conftest import V3_QUIET, tpe_config
from tests.tpe.test_authorizer import request, run
from tests.tpe.test_pay_e2e import GUICHET, guichet, terminal_port

OUTCOMES = {
    "approve": "approved",
    "refuse": "declined",
    "cancel": "cancelled",
    "slow": "approved",
    "nak_first": "approved",
    "malformed": "unknown",
    "no_answer": "unknown",
    "silent": "cancelled",  # the port refused the connection: nothing reached the terminal
    "garbage": "approved",
    "fragmented": "approved",
    "unplug": "unknown",
    # Hostile terminals (issue 12): a card number or an over-long field is never stored as sent.
    "pan_in_code": "unknown",  # approved, but the authorisation code is a card number: settle from the ticket
    "pan_in_private": "approved",  # the private data (the register's own field) is dropped, the approval stands
    "long_fields": "unknown",
    "refuse_long": "declined",  # refused (AF starts 04): the bad fields are dropped, the refusal stands
    "pan_in_aid": "approved",  # the AID is dropped, the approval stands
    "pan_dotted": "approved",  # CF dropped whatever separates the digits
    "pan_split": "unknown",  # AC + CF together hold the card number: the authorisation code cannot be kept
    "not_done_labelled": "unknown",  # AE=01 AF=01 ("authorised") followed by its label: money may have moved
    "not_done_garbled": "unknown",  # not done for a reason that cannot be read: it may be "authorised"
    "refuse_bad_action": "unknown",  # the action echoed cannot be read: the answer may be another operation's
}


@pytest.mark.parametrize("behaviour", list(OUTCOMES))
def test_outcome_for_each_terminal_behaviour(v3_sim, behaviour: str) -> None:
    sim = v3_sim(behaviour=behaviour, card="VISA")
    out, statuses = run(TpeAuthorizer(tpe_config(terminal_port(sim)["port"])), request())
    assert out.status == OUTCOMES[behaviour], out.message
    assert out.detail["protocol"] == "V3" and out.detail["terminal_result"]
    assert all(pan not in json.dumps(out.__dict__) for pan in TEST_PANS)
    if out.status == "unknown":
        assert "ticket" in out.message
    if out.status == "approved":
        assert out.card is not None
        aid = None if behaviour == "pan_in_aid" else "A0000000031010"
        assert (out.card["scheme"], out.card["aid"]) == ("VISA", aid)
        assert out.card["pan_masked"].startswith("476173******") and out.card["pan_token"] is None
        assert out.code  # AC, the authorisation number
    if behaviour == "refuse":
        assert out.detail["answer"]["reason"] == "04"
    if behaviour in ("pan_in_private", "pan_dotted"):
        assert out.detail["answer"]["private"] == ""
        assert out.detail["answer"]["dropped"] == ["private data (CF): holds a card number"]
    if behaviour in ("pan_in_code", "long_fields", "pan_split"):
        assert "approved, but the answer is unusable" in out.message and "(AC" in out.message
    if behaviour == "refuse_long":
        assert out.detail["answer"]["private"] == "" and out.detail["answer"]["reason"] == "04"
        assert len(out.detail["answer"]["dropped"]) == 2
    if behaviour == "not_done_labelled":
        assert "AE=01 AF=01" in out.message
    if behaviour == "not_done_garbled":
        assert "unreadable reason (AF)" in out.message
    if behaviour == "refuse_bad_action":
        assert "action ?" in out.message
    if behaviour != "silent":
        assert "pin_on_terminal" in statuses


def test_protocol_v3_with_a_bare_address(v3_sim) -> None:
    sim = v3_sim()
    out, _ = run(TpeAuthorizer(tpe_config(f"127.0.0.1:{sim.port}", protocol="V3")), request(12_345, "TND"))
    assert out.status == "approved"
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert req is not None and (req.amount, req.currency_numeric) == (12_345, "788")


def test_tpe_cli_against_the_v3_sandbox_process(tmp_path) -> None:
    proc = subprocess.Popen(
        [*GUICHET, "sandbox", "tpe", "--protocol", "v3", "--listen", "127.0.0.1:0", "--think", "0",
         "--script", "refuse"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("tcp://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
        port = f"{url}?quiet={V3_QUIET}"
        check = guichet(None, tmp_path, "tpe", "check", "--port", port)
        assert check.returncode == 0 and "terminal ready" in check.stdout and "V3" in check.stdout
        refused = guichet(None, tmp_path, "tpe", "pay", "--port", port, "--amount", "5", "--ack-timeout", "1")
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith("guichet: refused")
        paid = guichet(None, tmp_path, "tpe", "pay", "--port", port, "--amount", "1234.50", "--json")
        assert paid.returncode == 0, paid.stderr
        data = json.loads(paid.stdout)
        assert (data["result"], data["amount"], data["currency"]) == ("approved", 123450, "DZD")
        assert data["pan_masked"].startswith("628058******") and data["reference"]
        assert all(pan not in paid.stdout + paid.stderr for pan in TEST_PANS)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
    down = guichet(None, tmp_path, "tpe", "check", "--port", url)  # the simulator is gone: refused, exit 1
    assert down.returncode == 1 and url.split("//")[1].split("?")[0] in down.stderr


def test_a_bad_v3_url_is_a_usage_error_naming_the_option(tmp_path) -> None:
    out = guichet(None, tmp_path, "tpe", "check", "--port", "tcp://127.0.0.1:1?speed=9")
    assert out.returncode == 2 and "speed" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_sandbox_refuses_an_e_plus_only_behaviour_for_v3(tmp_path) -> None:
    out = guichet(None, tmp_path, "sandbox", "tpe", "--protocol", "v3", "--listen", "127.0.0.1:0",
                  "--behaviour", "bad_lrc")
    assert out.returncode == 2 and "bad_lrc" in out.stderr

"""Concert V3 / Caisse-AP through the agent: the ``card_terminal`` authorizer's outcome for each terminal
behaviour, ``guichet pay --method card_terminal`` end to end (real CLI subprocess, sandbox billing server over
HTTP, the V3 simulator on a loopback TCP port, the journal on disk), ``guichet tpe`` and ``guichet sandbox tpe
--protocol v3`` as a technician runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import config
from agent.terminal import TerminalAuthorizer
from sandbox.tpe import TEST_PANS, V3Simulator
from tests.tpe.conftest import TPE_TIMEOUTS, V3_QUIET, tpe_config
from tests.tpe.test_authorizer import request, run

GUICHET = [sys.executable, "-m", "guichet"]

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


def port_of(sim: V3Simulator) -> str:
    return f"{sim.url}?quiet={V3_QUIET}"


@pytest.mark.parametrize("behaviour", list(OUTCOMES))
def test_outcome_for_each_terminal_behaviour(v3_sim, behaviour: str) -> None:
    sim = v3_sim(behaviour=behaviour, card="VISA")
    out, statuses = run(TerminalAuthorizer(tpe_config(port_of(sim))), request())
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
    out, _ = run(TerminalAuthorizer(tpe_config(f"127.0.0.1:{sim.port}", protocol="V3")), request(12_345, "TND"))
    assert out.status == "approved"
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert req is not None and (req.amount, req.currency_numeric) == (12_345, "788")


def _env(cfg: Path | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GUICHET_CRASHPOINT", "GUICHET_CONFIG")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if cfg is not None:
        env["GUICHET_CONFIG"] = str(cfg)
    return env


def guichet(cfg: Path | None, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUICHET, *args], capture_output=True, text=True, env=_env(cfg, tmp_path), timeout=60,
                          stdin=subprocess.DEVNULL)


def _config_file(billing_config: config.Config, sim: V3Simulator, tmp_path: Path) -> Path:
    data = billing_config.model_dump(mode="python")
    data["server"]["token"] = data["server"]["token"].get_secret_value()
    data["cards"]["hmac_key"] = data["cards"]["hmac_key"].get_secret_value()
    data["cards"]["schemes"] = [{"name": "EDAHABIA", "bins": ["628058"]}]
    data["tpe"].update({"port": port_of(sim), **TPE_TIMEOUTS})
    return config.write_config(config.validate(data), tmp_path / "guichet.toml")


@pytest.mark.parametrize(("behaviour", "rc", "state"), [("approve", 0, {"approved", "uploaded"}),
                                                        ("unplug", 1, {"unknown"}),
                                                        ("pan_in_private", 0, {"approved", "uploaded"}),
                                                        ("pan_in_code", 1, {"unknown"}),
                                                        ("pan_in_aid", 0, {"approved", "uploaded"})])
def test_pay_with_the_terminal_over_tcp(v3_sim, billing_config, billing_server, seeded_references, tmp_path,
                                        behaviour, rc, state) -> None:
    sim = v3_sim(behaviour=behaviour)
    cfg = _config_file(billing_config, sim, tmp_path)
    ref = seeded_references[0]
    out = guichet(cfg, tmp_path, "pay", ref, "--method", "card_terminal", "--json")
    assert out.returncode == rc, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] in state and summary["method"] == "card_terminal" and summary["bill_reference"] == ref
    sim.wait_idle()
    assert [e.request.amount for e in sim.exchanges if e.request is not None] == [summary["amount"]]
    journal_bytes = b"".join(p.read_bytes() for p in Path(billing_config.state.dir).rglob("*") if p.is_file())
    assert all(pan.encode() not in journal_bytes for pan in TEST_PANS)
    if behaviour in ("approve", "pan_in_private", "pan_in_aid"):
        assert b"628058******" in journal_bytes  # the masked PAN is what the journal keeps
        sync = guichet(cfg, tmp_path, "sync", "--once")
        assert sync.returncode == 0, sync.stderr
        uploaded = json.dumps(billing_server.recorded_payments())
        assert summary["payment_id"] in uploaded and all(pan not in uploaded for pan in TEST_PANS)
    else:
        assert len(out.stderr.strip().splitlines()) == 1 and "UNKNOWN" in out.stderr
        # The bill is blocked: a second attempt never reaches the terminal.
        again = guichet(cfg, tmp_path, "pay", ref, "--method", "card_terminal", "--json")
        assert again.returncode == 1
        sim.wait_idle()
        assert len([e for e in sim.exchanges if e.request is not None]) == 1


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

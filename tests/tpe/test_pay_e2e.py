"""`guichet pay REF --method card_terminal` end to end, over either protocol: the real CLI as a subprocess, the
sandbox billing server over HTTP, the E+ simulator on a pty or the V3 simulator on loopback TCP, the journal
on disk. Including SIGKILL while the terminal holds the amount: after a restart the payment is unknown and the
bill blocked, never charged a second time. The helpers here (``config_file``, ``guichet``) serve
test_v3_pay_e2e.py too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import config
from sandbox.tpe import TEST_PANS, TpeSimulator, V3Simulator
from tests.tpe.conftest import FAST_BAUD, TPE_TIMEOUTS, V3_QUIET

GUICHET = [sys.executable, "-m", "guichet"]


def terminal_port(sim: TpeSimulator | V3Simulator) -> dict[str, Any]:
    """The ``[tpe]`` settings that reach ``sim``: its pty at the tests' speed, or its URL with a short quiet."""
    if isinstance(sim, V3Simulator):
        return {"port": f"{sim.url}?quiet={V3_QUIET}"}
    return {"port": sim.path, "baud": FAST_BAUD, "framing": "7E1"}


def config_file(billing_config: config.Config, sim: TpeSimulator | V3Simulator, tmp_path: Path, **tpe: Any) -> Path:
    data = billing_config.model_dump(mode="python")
    data["server"]["token"] = data["server"]["token"].get_secret_value()
    data["cards"]["hmac_key"] = data["cards"]["hmac_key"].get_secret_value()
    data["cards"]["schemes"] = [{"name": "EDAHABIA", "bins": ["628058"]}]
    data["tpe"].update({**terminal_port(sim), **TPE_TIMEOUTS, **tpe})
    return config.write_config(config.validate(data), tmp_path / "guichet.toml")


def _env(cfg: Path | None, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GUICHET_CRASHPOINT", "GUICHET_CONFIG")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if cfg is not None:
        env["GUICHET_CONFIG"] = str(cfg)
    return env


def guichet(cfg: Path | None, tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, with ``cfg`` as its configuration (None: none) and no user config."""
    return subprocess.run([*GUICHET, *args], capture_output=True, text=True, env=_env(cfg, tmp_path),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def payments(cfg: Path, tmp_path: Path) -> list[dict]:
    out = guichet(cfg, tmp_path, "queue", "list", "--all", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


APPROVED, UNKNOWN = {"approved", "uploaded"}, {"unknown"}
# (protocol, behaviour, exit code, the payment's state)
PAYS = [
    ("E+", "approve", 0, APPROVED), ("E+", "refuse", 1, {"declined"}), ("E+", "cancel", 1, {"cancelled"}),
    ("E+", "no_answer", 1, UNKNOWN), ("E+", "unplug", 1, UNKNOWN), ("E+", "silent", 1, {"cancelled"}),
    ("V3", "approve", 0, APPROVED), ("V3", "unplug", 1, UNKNOWN),
    # Hostile V3 terminals (issue 12): a card number in a field never reaches the journal or the server.
    ("V3", "pan_in_private", 0, APPROVED), ("V3", "pan_in_code", 1, UNKNOWN), ("V3", "pan_in_aid", 0, APPROVED),
]


@pytest.mark.parametrize(("protocol", "behaviour", "rc", "state"), PAYS)
def test_pay_with_the_terminal(terminals, billing_config, billing_server, seeded_references, tmp_path,
                               protocol, behaviour, rc, state) -> None:
    sim = terminals[protocol].sim(behaviour=behaviour)
    cfg = config_file(billing_config, sim, tmp_path)
    ref = seeded_references[0]
    out = guichet(cfg, tmp_path, "pay", ref, "--method", "card_terminal", "--json")
    assert out.returncode == rc, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] in state and summary["method"] == "card_terminal" and summary["bill_reference"] == ref
    if rc:
        assert len(out.stderr.strip().splitlines()) == 1  # one clear line
    sim.wait_idle()
    sent = [e.request for e in sim.exchanges if e.request is not None]
    assert [r.amount for r in sent] == ([summary["amount"]] if behaviour != "silent" else [])
    journal_bytes = b"".join(p.read_bytes() for p in Path(billing_config.state.dir).rglob("*") if p.is_file())
    assert all(pan.encode() not in journal_bytes for pan in TEST_PANS)
    if state is UNKNOWN:
        assert "UNKNOWN" in out.stderr
        # The bill is blocked: a second attempt never reaches the terminal.
        again = guichet(cfg, tmp_path, "pay", ref, "--method", "card_terminal", "--json")
        assert again.returncode == 1
        sim.wait_idle()
        assert len([e for e in sim.exchanges if e.request is not None]) == 1
    if protocol == "V3" and state is APPROVED:
        assert b"628058******" in journal_bytes  # the masked PAN is what the journal keeps
        sync = guichet(cfg, tmp_path, "sync", "--once")
        assert sync.returncode == 0, sync.stderr
        uploaded = json.dumps(billing_server.recorded_payments())
        assert summary["payment_id"] in uploaded and all(pan not in uploaded for pan in TEST_PANS)


def test_sigkill_while_the_terminal_holds_the_amount(tpe_sim, billing_config, seeded_references, tmp_path) -> None:
    sim = tpe_sim(behaviour="slow", pin_delay=30.0)
    cfg = config_file(billing_config, sim, tmp_path, answer_timeout=60)
    ref = seeded_references[0]
    proc = subprocess.Popen(
        [*GUICHET, "pay", ref, "--method", "card_terminal", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(cfg, tmp_path), stdin=subprocess.DEVNULL,
    )
    try:
        for _ in range(1500):  # bounded: until the terminal has the amount (or the CLI died)
            if any(e.request is not None for e in sim.exchanges) or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        assert sim.exchanges[-1].request is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # Restart: the next `pay` recovers the journal; the payment is unknown, the bill blocked, nothing resent.
    sim.behaviour = "approve"
    again = guichet(cfg, tmp_path, "pay", ref, "--method", "card_terminal", "--json")
    assert again.returncode == 1
    rows = [p for p in payments(cfg, tmp_path) if p["bill_reference"] == ref]
    assert [p["state"] for p in rows] == ["unknown"]
    assert len([e for e in sim.exchanges if e.request is not None]) == 1

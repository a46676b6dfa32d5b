"""`guichet pay REF --method card_terminal` end to end: the real CLI as a subprocess, the sandbox billing
server over HTTP, the TPE simulator on a pty, the journal on disk. Including SIGKILL while the terminal holds
the amount: after a restart the payment is unknown and the bill blocked, never charged a second time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import config
from sandbox.tpe import TEST_PANS, TpeSimulator
from tests.tpe.conftest import FAST_BAUD, TPE_TIMEOUTS

GUICHET = [sys.executable, "-m", "guichet"]


def _config_file(billing_config: config.Config, sim: TpeSimulator, tmp_path: Path, **tpe: object) -> Path:
    data = billing_config.model_dump(mode="python")
    data["server"]["token"] = data["server"]["token"].get_secret_value()
    data["cards"]["hmac_key"] = data["cards"]["hmac_key"].get_secret_value()
    data["cards"]["schemes"] = [{"name": "EDAHABIA", "bins": ["628058"]}]
    data["tpe"].update({"port": sim.path, "baud": FAST_BAUD, "framing": "7E1", **TPE_TIMEOUTS, **tpe})
    return config.write_config(config.validate(data), tmp_path / "guichet.toml")


def _env(cfg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GUICHET_CRASHPOINT"}
    env["GUICHET_CONFIG"] = str(cfg)
    return env


def guichet(cfg: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GUICHET, *args], capture_output=True, text=True, env=_env(cfg), timeout=timeout, stdin=subprocess.DEVNULL
    )


def payments(cfg: Path) -> list[dict]:
    out = guichet(cfg, "queue", "list", "--all", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("behaviour", "rc", "state"),
    [("approve", 0, {"approved", "uploaded"}), ("refuse", 1, {"declined"}), ("cancel", 1, {"cancelled"}),
     ("no_answer", 1, {"unknown"}), ("unplug", 1, {"unknown"}), ("silent", 1, {"cancelled"})],
)
def test_pay_with_the_terminal(tpe_sim, billing_config, seeded_references, tmp_path, behaviour, rc, state) -> None:
    sim = tpe_sim(behaviour=behaviour)
    cfg = _config_file(billing_config, sim, tmp_path)
    ref = seeded_references[0]
    out = guichet(cfg, "pay", ref, "--method", "card_terminal", "--json")
    assert out.returncode == rc, out.stderr
    summary = json.loads(out.stdout)
    assert summary["state"] in state and summary["method"] == "card_terminal"
    assert summary["bill_reference"] == ref
    if rc:
        assert len(out.stderr.strip().splitlines()) == 1  # one clear line
    sim.wait_idle()
    sent = [e.request for e in sim.exchanges if e.request is not None]
    assert [r.amount for r in sent] == ([summary["amount"]] if behaviour != "silent" else [])
    journal_bytes = b"".join(p.read_bytes() for p in Path(billing_config.state.dir).rglob("*") if p.is_file())
    assert all(pan.encode() not in journal_bytes for pan in TEST_PANS)
    if behaviour in ("no_answer", "unplug"):
        assert "UNKNOWN" in out.stderr
        # The bill is blocked: a second attempt does not reach the terminal.
        again = guichet(cfg, "pay", ref, "--method", "card_terminal", "--json")
        assert again.returncode == 1
        sim.wait_idle()
        assert len([e for e in sim.exchanges if e.request is not None]) == 1


def test_sigkill_while_the_terminal_holds_the_amount(tpe_sim, billing_config, seeded_references, tmp_path) -> None:
    sim = tpe_sim(behaviour="slow", pin_delay=30.0)
    cfg = _config_file(billing_config, sim, tmp_path, answer_timeout=60)
    ref = seeded_references[0]
    proc = subprocess.Popen(
        [*GUICHET, "pay", ref, "--method", "card_terminal", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(cfg), stdin=subprocess.DEVNULL,
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
    again = guichet(cfg, "pay", ref, "--method", "card_terminal", "--json")
    assert again.returncode == 1
    rows = [p for p in payments(cfg) if p["bill_reference"] == ref]
    assert [p["state"] for p in rows] == ["unknown"]
    assert len([e for e in sim.exchanges if e.request is not None]) == 1

"""pyTeliumManager 2.4.2, a real Concert E+ client, in its own virtualenv against our simulator on a pty.

The virtualenv is built once per machine under the temp dir (PyPI). Skipped only when it cannot be built
outside CI; in CI (env CI set) that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sandbox.tpe import TEST_PANS

VERSION = "2.4.2"
CLIENT = Path(__file__).with_name("telium_client.py")


@pytest.fixture(scope="session")
def telium_python() -> Path:
    venv = Path(tempfile.gettempdir()) / f"guichet-venv-telium-{VERSION}"
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import telium"]
    if python.exists() and subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True,
                       timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"pyTeliumManager=={VERSION}"], check=True,
                       capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        reason = f"cannot install pyTeliumManager=={VERSION}: {getattr(e, 'stderr', b'') or e}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def pay(python: Path, path: str, baud: int, framing: str, amount: str, currency: str) -> dict:
    out = subprocess.run([str(python), str(CLIENT), path, str(baud), framing, amount, currency],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_peer_pays_through_the_simulator_7e1(telium_python, tpe_sim) -> None:
    sim = tpe_sim(baud=9600, framing="7E1")
    got = pay(telium_python, sim.path, 9600, "7E1", "12.5", "EUR")
    got.pop("elapsed")
    assert got == {"ready": True, "accepted": True, "succeeded": True, "amount": 12.5,
                   "report": "628058******" + TEST_PANS[0][-4:], "currency": "978"}
    sim.wait_idle()
    req = sim.exchanges[-1].request
    assert (req.amount, req.currency_numeric, req.answer_flag, req.delay) == (1250, "978", "1", "A010")


def test_peer_refused_8n1(telium_python, tpe_sim) -> None:
    sim = tpe_sim(baud=115200, framing="8N1", behaviour="refuse")
    got = pay(telium_python, sim.path, 115200, "8N1", "99999.99", "EUR")
    assert got["accepted"] and got["succeeded"] is False and got["amount"] == 99999.99


def test_peer_gives_up_on_a_nak_where_we_resend(telium_python, tpe_sim, tpe_link) -> None:
    sim = tpe_sim(baud=115200, framing="8N1", behaviour="nak_first")
    assert pay(telium_python, sim.path, 115200, "8N1", "1.0", "EUR")["accepted"] is False
    sim.wait_idle()
    sim.script("nak_first")
    assert tpe_link(sim).pay(100, "EUR").kind == "approved"

"""`guichet receipt` as a technician or an agency uses it: verify a seal (text or picture), test print, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.printer import VirtualPrinter
from tests.receipts.conftest import KEY, one_bill
from ui.receipts import ReceiptOptions, render, seal_text

ROOT = Path(__file__).resolve().parents[2]
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def guichet(tmp_path: Path) -> Run:
    cfg = tmp_path / "guichet.toml"
    cfg.write_text(f"""
[terminal]
id = "ORAN-07-G2"
agency_id = "ORAN-07"
currency = "DZD"
[state]
dir = "{tmp_path / 'state'}"
[printer]
url = "none"
languages = ["fr", "ar"]
layout = "side"
[receipts]
signing_key = "{KEY.decode()}"
""")
    cfg.chmod(0o600)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "GUICHET_CONFIG": str(cfg)}
        return subprocess.run([sys.executable, "-m", "guichet", *args], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=60)

    return run


def test_verify_a_genuine_and_a_forged_seal(guichet: Run) -> None:
    text = seal_text(one_bill(), KEY)
    ok = guichet("receipt", "verify", text, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"genuine": True, "receipt_number": "ORAN-07-G2-000042",
                                     "terminal_id": "ORAN-07-G2", "amount": "11273.00", "currency": "DZD",
                                     "time": "20261130T0814Z"}
    forged = guichet("receipt", "verify", text.replace("A=1127300", "A=112730"))
    assert forged.returncode == 1 and "NOT GENUINE: S: the signature does not match" in forged.stderr
    junk = guichet("receipt", "verify", "GQ1;R=x;" + "A" * 3000)
    assert junk.returncode == 1 and junk.stderr.count("\n") == 1


def test_verify_from_a_picture_of_the_receipt(guichet: Run, tmp_path: Path) -> None:
    pytest.importorskip("zxingcpp", reason="reading a QR image needs zxing-cpp")
    picture = tmp_path / "scan.png"
    render(one_bill(), ReceiptOptions(languages=("ar",), signing_key=KEY)).save(picture)
    r = guichet("receipt", "verify", str(picture))
    assert r.returncode == 0 and "genuine: receipt ORAN-07-G2-000042" in r.stdout
    other = tmp_path / "other.png"
    render(one_bill(), ReceiptOptions(languages=("ar",), signing_key=b"someone else's key")).save(other)
    assert guichet("receipt", "verify", str(other)).returncode == 1


def test_test_print_and_status(guichet: Run, tmp_path: Path) -> None:
    with VirtualPrinter(tmp_path / "paper") as vp:
        vp.listen("127.0.0.1", 0)
        r = guichet("receipt", "test", "--printer", vp.url)
        assert r.returncode == 0, r.stderr
        assert "printed ORAN-07-G2-TEST" in r.stdout and vp.wait_jobs(1)[0].job.drawer_kicks == 0
        s = guichet("receipt", "status", "--printer", vp.url, "--json")
        assert s.returncode == 0 and json.loads(s.stdout)["ready"] is True
        vp.behaviour = "paper_out"
        s = guichet("receipt", "status", "--printer", vp.url)
        assert s.returncode == 1 and "paper out" in s.stdout
        r = guichet("receipt", "test", "--printer", vp.url)
        assert r.returncode == 1 and "not printed: printer not ready: paper out" in r.stderr
    none = guichet("receipt", "status")
    assert none.returncode == 1 and "no printer configured" in none.stderr


def test_reprint_of_an_unknown_receipt_is_one_line(guichet: Run) -> None:
    r = guichet("receipt", "print", "ORAN-07-G2-999999", "--printer", "tcp://127.0.0.1:9")
    assert r.returncode == 1 and r.stderr.strip() == (
        "guichet: no payment with receipt number 'ORAN-07-G2-999999' in the journal")


@pytest.mark.parametrize("where", [["--listen", "127.0.0.1:0"], ["--pty"]])
def test_guichet_sandbox_printer_prints_what_it_is_sent(tmp_path: Path, where: list[str]) -> None:
    from drivers.printer import open_printer
    from ui.receipts import print_receipt

    proc = subprocess.Popen([sys.executable, "-m", "guichet", "sandbox", "printer", *where, "--out",
                             str(tmp_path / "out"), "--dots", "576"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("serial://" if "--pty" in where else "tcp://127.0.0.1:")
        result = print_receipt(open_printer(url, timeout=5), one_bill(),
                               ReceiptOptions(languages=("fr", "ar"), signing_key=KEY))
        assert result.ok, result.error
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["0001.png"]

"""`guichet tpe check|pay` and `guichet sandbox tpe`, as a technician runs them (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import config
from sandbox.tpe import TEST_PANS

GUICHET = [sys.executable, "-m", "guichet"]
FAST = ["--baud", "115200", "--ack-timeout", "0.5", "--answer-timeout", "2"]


def run(*args: str, tmp_path: Path, with_config: bool = False) -> subprocess.CompletedProcess[str]:
    """No config file by default (line options from DESIGN's defaults and the command line)."""
    env = {k: v for k, v in os.environ.items() if k != "GUICHET_CONFIG"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    if with_config:
        cfg = config.validate({"tpe": {"baud": 115200, "framing": "8N1", "ack_timeout": 0.5, "answer_timeout": 2}})
        env["GUICHET_CONFIG"] = str(config.write_config(cfg, tmp_path / "guichet.toml"))
    return subprocess.run([*GUICHET, *args], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_check_and_pay_approved(tpe_sim, tmp_path) -> None:
    sim = tpe_sim()
    out = run("tpe", "check", "--port", sim.path, *FAST, tmp_path=tmp_path)
    assert out.returncode == 0 and "terminal ready" in out.stdout
    out = run("tpe", "pay", "--port", sim.path, *FAST, "--amount", "1234.50", "--json", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["result"], data["amount"], data["currency"]) == ("approved", 123450, "DZD")
    assert data["pan_masked"].startswith("628058******")
    assert all(pan not in out.stdout + out.stderr for pan in TEST_PANS)


def test_tnd_three_decimals(tpe_sim, tmp_path) -> None:
    sim = tpe_sim()
    out = run("tpe", "pay", "--port", sim.path, *FAST, "--amount", "12.345", "--currency", "TND", "--json",
              tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    sim.wait_idle()
    assert (sim.exchanges[-1].request.amount, sim.exchanges[-1].request.currency_numeric) == (12345, "788")


@pytest.mark.parametrize(("behaviour", "word"), [("refuse", "refused"), ("no_answer", "unknown")])
def test_pay_failures_are_one_line_exit_1(tpe_sim, tmp_path, behaviour: str, word: str) -> None:
    sim = tpe_sim(behaviour=behaviour)
    out = run("tpe", "pay", "--port", sim.path, *FAST, "--answer-timeout", "0.5", "--amount", "10", tmp_path=tmp_path)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("guichet: ") and word in last


@pytest.mark.parametrize(
    ("args", "field"),
    [(["--amount", "1000000.00"], "--amount"), (["--amount", "1.234"], "--amount"),
     (["--amount", "-5"], "--amount"), (["--amount", "5", "--pos", "1"], "--pos")],
)
def test_bad_input_exit_2_before_sending(tpe_sim, tmp_path, args: list[str], field: str) -> None:
    sim = tpe_sim()
    out = run("tpe", "pay", "--port", sim.path, *FAST, *args, tmp_path=tmp_path)
    assert out.returncode == 2
    assert field in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert sim.exchanges == []


def test_line_settings_come_from_the_config(tpe_sim, tmp_path) -> None:
    sim = tpe_sim(framing="8N1")
    out = run("tpe", "check", "--port", sim.path, tmp_path=tmp_path, with_config=True)
    assert out.returncode == 0 and "115200 8N1" in out.stdout


def test_check_without_terminal_exit_1(tmp_path) -> None:
    out = run("tpe", "check", "--port", "/dev/guichet-none", tmp_path=tmp_path)
    assert out.returncode == 1 and "/dev/guichet-none" in out.stderr


def test_sandbox_tpe_prints_its_pty_and_serves(tmp_path) -> None:
    proc = subprocess.Popen(
        [*GUICHET, "sandbox", "tpe", "--baud", "115200", "--think", "0", "--script", "refuse"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/")
        first = run("tpe", "pay", "--port", path, *FAST, "--amount", "5", tmp_path=tmp_path)
        second = run("tpe", "pay", "--port", path, *FAST, "--amount", "5", tmp_path=tmp_path)
        assert (first.returncode, second.returncode) == (1, 0)  # scripted refuse, then the default approve
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0

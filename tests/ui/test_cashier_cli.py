"""`guichet cashier ...` through the real CLI (subprocesses) on a real cashiers.db, default argon2id."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cashiers import CashierStore, LockedOut, LoginFailed

GUICHET = str(Path(sys.executable).with_name("guichet"))


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    """run(args..., pin="1234") -> CompletedProcess; the PIN, if any, goes on stdin with --pin-stdin."""
    cfg = tmp_path / "guichet.toml"
    cfg.write_text(
        f'[terminal]\nid = "ORAN-07-G1"\nagency_id = "ORAN-07"\n[state]\ndir = "{tmp_path / "state"}"\n'
        "[ui]\npin_attempts = 2\n",
        encoding="utf-8",
    )
    env = {**os.environ, "SUDO_USER": "tech1"}

    def run(*args: str, pin: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--pin-stdin"] if pin is not None else []
        return subprocess.run(
            [GUICHET, "--config", str(cfg), "cashier", *args, *extra],
            input=(pin + "\n") if pin is not None else "", capture_output=True, text=True, timeout=60, env=env,
        )

    run.state = tmp_path / "state"  # type: ignore[attr-defined]
    return run


def test_accounts_added_locked_unlocked_given_a_new_pin_disabled_and_enabled(cli: Any) -> None:
    assert "no cashier account yet" in cli("list").stdout
    r = cli("add", "s0001", "--name", "Karim S.", "--supervisor", pin="917355")
    assert r.returncode == 0 and "s0001 (Karim S., supervisor): created" in r.stdout, r.stderr
    r = cli("add", "c0042", "--name", "Amel B.", "--json", pin="4826")
    assert r.returncode == 0 and json.loads(r.stdout)["role"] == "cashier", r.stderr
    assert b"4826" not in (cli.state / "cashiers.db").read_bytes()
    store = CashierStore.open(cli.state, max_attempts=2)
    try:
        with pytest.raises(LoginFailed):
            store.verify("c0042", "0000")
        with pytest.raises(LockedOut):
            store.verify("c0042", "0000")
        rows = cli("list").stdout.splitlines()
        assert "locked until" in rows[0] and "Amel B." in rows[0] and "active" in rows[1]
        assert cli("unlock", "c0042").returncode == 0
        assert cli("set-pin", "c0042", pin="55667788").returncode == 0
        with pytest.raises(LoginFailed):
            store.verify("c0042", "4826")
        assert store.verify("c0042", "55667788").name == "Amel B."
        r = cli("disable", "c0042")
        assert r.returncode == 0 and "c0042 (Amel B., cashier): disabled" in r.stdout
        with pytest.raises(LoginFailed):  # the same answer as a wrong PIN
            store.verify("c0042", "55667788")
        r = cli("enable", "c0042", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["active"] is True
        events = store.events("c0042")
    finally:
        store.close()
    # Every change is in the audit trail with who made it (the sudo user, not just "root").
    done = [(e["kind"], e["actor"]) for e in events if e["kind"] not in ("login", "login_failed", "locked")]
    assert done == [("created", "cli:tech1"), ("unlocked", "cli:tech1"), ("pin_changed", "cli:tech1"),
                    ("disabled", "cli:tech1"), ("enabled", "cli:tech1")]


BAD = [
    (("add", "c0099", "--name", "X"), "123456789", 2, "pin: must be 4 to 8 digits"),
    (("add", "c0099", "--name", "X"), "12a4", 2, "pin: must be 4 to 8 digits"),
    (("add", "c 99", "--name", "X"), "1234", 2, "cashier_id: 'c 99' must be"),
    (("add", "c0099", "--name", " "), "1234", 2, "--name: must not be empty"),
    (("add", "s0001", "--name", "X"), "1234", 1, "cashier_id: 's0001' already exists"),
    (("add", "c0099", "--name", "X"), None, 2, "pass --pin-stdin"),  # no terminal to ask on, no PIN argument
    (("unlock", "nobody"), None, 1, "cashier_id: 'nobody' does not exist"),
    (("set-pin", "nobody"), "1234", 1, "cashier_id: 'nobody' does not exist"),
    (("disable", "s0001"), None, 1, "last active supervisor"),
]


def test_bad_input_is_one_line_naming_the_field_and_stores_nothing(cli: Any) -> None:
    cli("add", "s0001", "--name", "Karim S.", "--supervisor", pin="917355")
    for args, pin, code, message in BAD:
        r = cli(*args, pin=pin)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and message in r.stderr, (args, r.stderr)
    rows = json.loads(cli("list", "--json").stdout)
    assert [(c["cashier_id"], c["active"]) for c in rows] == [("s0001", True)]


def test_the_pin_prompt_on_a_terminal_is_hidden_and_confirmed(cli: Any, tmp_path: Path) -> None:
    import pty

    cfg = tmp_path / "guichet.toml"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [GUICHET, "--config", str(cfg), "cashier", "add", "c0042", "--name", "Amel B."],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )
    os.close(slave)
    seen = b""

    def read_until(text: bytes) -> None:
        nonlocal seen
        deadline = time.monotonic() + 30
        while text not in seen:
            assert time.monotonic() < deadline, f"{text!r} never came; got {seen!r}"
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 1024)
                except OSError:
                    break

    try:
        read_until(b"PIN (4-8 digits): ")
        os.write(master, b"4826\r")
        read_until(b"PIN again: ")
        os.write(master, b"4826\r")
        read_until(b"created")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        os.close(master)
    assert b"4826" not in seen  # never echoed
    store = CashierStore.open(cli.state)
    try:
        assert store.verify("c0042", "4826")
    finally:
        store.close()


def test_a_state_dir_that_cannot_be_made_is_one_line_naming_it(cli: Any) -> None:
    cli.state.write_text("not a directory\n")  # a technician's typo left a file where the state dir goes
    r = cli("add", "s0001", "--name", "Karim S.", "--supervisor", pin="917355")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(cli.state) in r.stderr
    assert cli.state.read_text() == "not a directory\n"  # nothing already there is lost

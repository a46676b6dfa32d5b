"""`guichet doctor` against a healthy counter and against each broken one, as a technician runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox.tpe import TpeSimulator
from tests.service.conftest import GUICHET, write_config

TPE_FAST = {"baud": 115200, "framing": "7E1", "ack_timeout": 0.5, "max_retries": 1}


def pcscd_available() -> bool:
    try:
        from drivers.pcsc import list_readers

        return bool(list_readers())
    except Exception:
        return False


needs_pcscd = pytest.mark.skipif(
    not os.environ.get("CI") and not pcscd_available(),
    reason="pcscd with the vpcd virtual reader is not running (./dev setup starts it)",
)


def doctor(config: Path, *, env: dict[str, str] | None = None, as_json: bool = True) -> tuple[int, Any, str]:
    e = {**os.environ, **(env or {})}
    cmd = [GUICHET, "--config", str(config), "doctor"] + (["--json"] if as_json else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=e, stdin=subprocess.DEVNULL)
    return r.returncode, json.loads(r.stdout) if as_json else r.stdout, r.stderr


def by_name(checks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in checks}


@pytest.fixture
def tpe():
    sim = TpeSimulator.on_pty(baud=115200, framing="7E1", think=0.0, pin_delay=0.1, ack_timeout=0.5)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def healthy(tmp_path, billing_server, tpe) -> Path:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return write_config(tmp_path / "g.toml", billing_server.url, state,
                        tpe={"port": tpe.path, **TPE_FAST},
                        payments={"default_method": "card_terminal", "methods": ["card_terminal", "card_reader"]})


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


@needs_pcscd
def test_healthy_counter_passes_every_check(healthy):
    rc, checks, _ = doctor(healthy)
    named = by_name(checks)
    assert rc == 0, [c for c in checks if c["status"] != "ok"]
    for name in ("config", "state_dir", "journal", "disk", "pcscd", "readers", "serial_port", "tpe",
                 "server", "server_tls", "server_token", "clock"):
        assert named[name]["status"] == "ok", named[name]
    assert "Virtual PCD" in named["readers"]["detail"]
    assert "ACK" in named["tpe"]["detail"]
    # The EMV setup (drivers.emv.checks): warnings, payments still go online. vpcd has no PC/SC part 10 PIN pad.
    assert named["pin_pad"]["status"] == "warn" and "no PIN pad" in named["pin_pad"]["detail"]
    assert named["ca_keys"]["status"] in ("ok", "warn")
    if named["ca_keys"]["status"] == "warn":
        assert "[[emv.ca_keys]]" in named["ca_keys"]["fix"]


@needs_pcscd
def test_human_output_one_line_per_check_with_fixes(healthy, tmp_path):
    rc, out, _ = doctor(healthy, as_json=False)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith("ok    config")
    assert lines[-1].startswith("0 failed")
    # Break one thing: the fix appears under the failed line.
    url = closed_port_url()
    broken = write_config(tmp_path / "b.toml", url, tmp_path / "state")
    rc, out, _ = doctor(broken, as_json=False)
    assert rc == 1
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("FAIL  server "))
    assert "Connection refused" in lines[i]
    assert lines[i + 1].strip().startswith("fix: check the network cable")


def test_bad_config(tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text('[terminal]\nid = "ORAN 07"\n[sync]\nbatch_size = 0\n')
    rc, checks, _ = doctor(cfg)
    c = by_name(checks)["config"]
    assert rc == 1 and c["status"] == "fail"
    assert "terminal.id" in c["detail"] and "sync.batch_size" in c["detail"]
    assert "guichet config check" in c["fix"]
    assert by_name(checks)["server"]["status"] == "skip"


def test_missing_config_file_says_how_to_create_it(tmp_path):
    rc, checks, _ = doctor(tmp_path / "nowhere.toml")
    c = by_name(checks)["config"]
    assert rc == 1 and c["status"] == "fail"
    assert "config init" in c["fix"]


def test_missing_pcscd(healthy):
    # pcsc-lite honours PCSCLITE_CSOCK_NAME: a socket path where no pcscd listens.
    rc, checks, _ = doctor(healthy, env={"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"})
    c = by_name(checks)["pcscd"]
    assert rc == 1 and c["status"] == "fail"
    assert "pcscd cannot be reached" in c["detail"]
    assert "systemctl enable --now pcscd.socket" in c["fix"]
    assert by_name(checks)["readers"]["status"] == "skip"


def test_unreachable_server(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path / "g.toml", closed_port_url(), state)
    rc, checks, _ = doctor(cfg)
    c = by_name(checks)["server"]
    assert rc == 1 and c["status"] == "fail"
    assert "Connection refused" in c["detail"]
    assert "server.url" in c["fix"]
    assert by_name(checks)["server_token"]["status"] == "skip"


def test_wrong_token(tmp_path, billing_server):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state, server={"token": "not-the-token"})
    rc, checks, _ = doctor(cfg)
    named = by_name(checks)
    assert rc == 1
    assert named["server"]["status"] == "ok"
    assert named["server_token"]["status"] == "fail"
    assert "refused this terminal's token (401" in named["server_token"]["detail"]
    assert "guichet config set server.token" in named["server_token"]["fix"]
    assert "not-the-token" not in json.dumps(checks)  # secrets never printed


def test_read_only_state_dir(tmp_path, billing_server):
    # Mode 0500: the service user cannot write. Root ignores mode bits, so doctor checks the owner's
    # write bit itself and fails as root too (CI runs as root).
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    state.chmod(0o500)
    try:
        cfg = write_config(tmp_path / "g.toml", billing_server.url, state)
        rc, checks, _ = doctor(cfg)
    finally:
        state.chmod(0o700)
    c = by_name(checks)["state_dir"]
    assert rc == 1 and c["status"] == "fail"
    assert "read-only (mode 0500" in c["detail"]
    assert c["fix"] == f"chmod 0700 {state}"


def test_state_dir_that_is_a_file(tmp_path, billing_server):
    # Unwritable whoever runs doctor, root included: nothing can be created inside a regular file.
    state = tmp_path / "state"
    state.write_text("oops")
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state)
    rc, checks, _ = doctor(cfg)
    c = by_name(checks)["state_dir"]
    assert rc == 1 and c["status"] == "fail"
    assert "is not a directory" in c["detail"]
    assert "install -d -m 0700" in c["fix"]


def test_busy_serial_port(tmp_path, billing_server, tpe):
    # Another program holds the terminal's port (pyserial's exclusive lock, as a second guichet would).
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import serial, sys, time\n"
         "s = serial.Serial(sys.argv[1], exclusive=True)\n"
         "print('held', flush=True)\n"
         "time.sleep(120)\n", tpe.path],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        cfg = write_config(tmp_path / "g.toml", billing_server.url, state, tpe={"port": tpe.path, **TPE_FAST})
        rc, checks, _ = doctor(cfg)
    finally:
        holder.kill()
        holder.wait(10)
    c = by_name(checks)["serial_port"]
    assert rc == 1 and c["status"] == "fail"
    assert f"{tpe.path} is busy" in c["detail"]
    assert f"fuser -v {tpe.path}" in c["fix"]
    assert by_name(checks)["tpe"]["status"] == "skip"


def test_missing_serial_port(tmp_path, billing_server):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state, tpe={"port": "/dev/ttyUSB-gone"})
    rc, checks, _ = doctor(cfg)
    c = by_name(checks)["serial_port"]
    assert rc == 1 and c["status"] == "fail"
    assert "does not exist" in c["detail"] and "tpe.port" in c["fix"]


def test_journal_integrity_and_unsent_payments_are_reported(tmp_path, billing_server, seeded_references):
    from tests.service.test_service import seed_journal

    state = tmp_path / "state"
    seed_journal(state, billing_server, seeded_references, approved=3)
    state.chmod(0o700)
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state)
    rc, checks, _ = doctor(cfg)
    j = by_name(checks)["journal"]
    # The crash leftover (authorizing) is not settled by doctor (read-only); 3 unsent are counted.
    assert "integrity ok" in j["detail"] and "3 unsent" in j["detail"]
    # A damaged page: integrity_check fails and the fix says to keep the file.
    db = state / "journal.db"
    data = bytearray(db.read_bytes())
    for offset in range(4096 + 100, min(len(data), 4096 * 3), 7):
        data[offset] = 0xFF
    db.write_bytes(bytes(data))
    rc, checks, _ = doctor(cfg)
    j = by_name(checks)["journal"]
    assert rc == 1 and j["status"] == "fail"
    assert "do not delete it" in j["fix"]


def test_caisse_ap_terminal_over_tcp(tmp_path, billing_server):
    """A Concert V3 (Caisse-AP IP) terminal: the serial check stands aside, the handshake is a TCP connect."""
    from sandbox.tpe import V3Simulator

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    sim = V3Simulator("127.0.0.1", 0, think=0.0, pin_delay=0.1).start()
    try:
        cfg = write_config(tmp_path / "g.toml", billing_server.url, state,
                           tpe={"port": sim.url, "protocol": "V3", "ack_timeout": 0.5, "max_retries": 1})
        _, checks, _ = doctor(cfg)
        named = by_name(checks)
        assert named["serial_port"]["status"] == "ok" and "network URL" in named["serial_port"]["detail"]
        assert named["tpe"]["status"] == "ok" and "Caisse-AP" in named["tpe"]["detail"]
    finally:
        sim.stop()
    _, checks, _ = doctor(cfg)  # the terminal is gone: named, with a network fix
    tpe = by_name(checks)["tpe"]
    assert tpe["status"] == "fail" and "network" in tpe["fix"]


def test_a_terminal_that_does_not_answer_enq_fails_with_the_registrys_word(tmp_path, billing_server, tpe):
    """The TPE line reads the device registry: plugged in but silent is "unresponsive", with the line fix."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    tpe.behaviour = "silent"
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state, tpe={"port": tpe.path, **TPE_FAST})
    rc, checks, _ = doctor(cfg)
    c = by_name(checks)["tpe"]
    assert rc == 1 and c["status"] == "fail"
    assert c["detail"].startswith("unresponsive: no ACK from the terminal")
    assert "tpe.baud=115200" in c["fix"]
    assert by_name(checks)["serial_port"]["status"] == "ok"  # the port is there; the terminal is not talking


def test_a_check_is_added_with_one_line(tmp_path, billing_server):
    """Engineers add checks (kiosk, EMV keys, printer) with one line; a check that raises is one failed line."""
    from agent import doctor as doc

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path / "g.toml", billing_server.url, state)

    def kiosk_check(d: doc.Doctor) -> doc.Check:
        assert d.cfg is not None and d.done["config"].ok  # earlier checks and the config are there to read
        return doc.warning("kiosk", "no seat configured", "set it")

    def broken_check(d: doc.Doctor) -> doc.Check:
        raise RuntimeError("bug in a check")

    saved = list(doc.CHECKS)
    try:
        doc.add_check(kiosk_check, before=doc.server_checks)
        doc.add_check(broken_check)
        checks = doc.run_checks(cfg)
    finally:
        doc.CHECKS[:] = saved
    names = [c.name for c in checks]
    assert names.index("kiosk") < names.index("server")
    broken = checks[-1]
    assert broken.name == "broken" and broken.failed and "RuntimeError: bug in a check" in broken.detail

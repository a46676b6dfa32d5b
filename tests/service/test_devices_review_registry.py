"""Review 4, findings 3, 5, 7-11 and the nits, on the device registry with real parts: a wedged pcscd (a unix
socket that takes the connection and never answers, in a child process: pcsc-lite reads its socket name
once per process), two processes' registries on one switched-off terminal, terminals on ptys that answer the
probe's ENQ with NAK or ENQ, a subscriber that blocks, a probe that always raises."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.devices import DeviceRegistry, DeviceState, TpeProbe
from drivers.concert import link_for
from sandbox.tpe import TpeSimulator
from tests.service.conftest import GUICHET, write_config

ROOT = str(Path(__file__).resolve().parents[2])
KW: dict[str, Any] = {"baud": 115200, "framing": "8N1", "ack_timeout": 0.3, "max_retries": 0}
ENQ, ACK, NAK, EOT, STX = 5, 6, 0x15, 4, 2


@pytest.fixture(autouse=True)
def own_lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminal locks and their records in a directory of this test's (its child processes inherit it): a pty
    number reused from an earlier test, or another test run on the machine, brings no record along."""
    monkeypatch.setenv("GUICHET_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


@pytest.fixture
def wedged_pcscd(tmp_path: Path) -> Iterator[str]:
    """A pcscd that accepts every client and never answers; its socket path."""
    path = str(tmp_path / "pcscd.comm")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(64)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    yield path
    srv.close()
    for c in held:
        c.close()


READER_LOOP = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from agent.devices import DeviceRegistry, ReaderProbe
reg = DeviceRegistry([ReaderProbe("", wait=0.5)]).start()
time.sleep(5)
reg.stop(timeout=5)
print(json.dumps({"states": [[s.state, s.detail] for s in reg.snapshot()], "polls": reg.polls,
                  "alive": reg.running}))
"""


def test_wedged_pcscd_is_unavailable_and_the_reader_loop_goes_on(wedged_pcscd: str) -> None:
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": wedged_pcscd}
    r = subprocess.run([sys.executable, "-c", READER_LOOP, ROOT], capture_output=True, text=True, timeout=60,
                       env=env)
    out = json.loads(r.stdout)
    assert out["states"] == [["unavailable", "pcscd not answering (no reply within 3.5 s)"]] \
        or out["states"] == [["unavailable", "pcscd not answering"]], out
    assert out["polls"] >= 2 and not out["alive"], out  # asked again, and stop() ended the loop


def test_guichet_devices_and_doctor_with_a_wedged_pcscd(tmp_path: Path, wedged_pcscd: str) -> None:
    with TpeSimulator.on_pty(baud=9600, framing="8N1", ack_timeout=0.5) as sim:
        cfg = write_config(tmp_path / "g.toml", "http://127.0.0.1:9/", tmp_path / "state",
                           tpe={"port": sim.path, "baud": 9600, "framing": "8N1", "ack_timeout": 0.5})
        env = {**os.environ, "PCSCLITE_CSOCK_NAME": wedged_pcscd}
        # Before: `guichet devices` never ended (pcsc-lite waits for pcscd without a limit).
        r = subprocess.run([GUICHET, "--config", str(cfg), "devices", "--json"], capture_output=True, text=True,
                           timeout=60, env=env, stdin=subprocess.DEVNULL)
        out = json.loads(r.stdout)
        assert r.returncode == 1 and "not answering" in out["pcsc_error"]
        devices = {d["kind"]: d for d in out["devices"]}
        assert devices["reader"]["state"] == "unavailable" and "not answering" in devices["reader"]["detail"]
        assert devices["tpe"]["state"] == "ready"  # probed side by side, not after the reader
        doctor = subprocess.run([GUICHET, "--config", str(cfg), "doctor"], capture_output=True, text=True,
                                timeout=60, env=env, stdin=subprocess.DEVNULL)
        tpe_line = next(line for line in doctor.stdout.splitlines() if " tpe " in f" {line} ")
        assert tpe_line.split()[0] == "ok", doctor.stdout


TWO_REGISTRIES = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from agent.devices import DeviceRegistry, TpeProbe
from drivers.concert import link_for
kw, timing = json.loads(sys.argv[3]), json.loads(sys.argv[4])
r = DeviceRegistry([TpeProbe(link_for(sys.argv[2], **kw), **timing)]).start()
time.sleep(60)
"""


def test_two_processes_on_a_switched_off_terminal_do_not_flap() -> None:
    timing = {"interval": 0.1, "liveness": 2.0, "retry": 0.5, "first_check": 0.0}
    with TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3) as sim:
        sim.behaviour = "silent"
        other = subprocess.Popen([sys.executable, "-c", TWO_REGISTRIES, ROOT, sim.path, json.dumps(KW),
                                  json.dumps(timing)])
        try:
            seen: list[str] = []
            registry = DeviceRegistry([TpeProbe(link_for(sim.path, **KW), **timing)])
            registry.subscribe(lambda st: seen.append(st.state))
            with registry:
                time.sleep(6)
        finally:
            other.kill()
            other.wait()
    # Before: "unresponsive > busy > unresponsive > busy ..." as each process found the other's probe on the line.
    assert seen == ["unresponsive"], seen
    # Each process's "no answer" counts for the other: not much more ENQ than one process alone (~6 s / 0.8 s).
    assert len(sim.exchanges) <= 12, len(sim.exchanges)


def fake_terminal(reply: bytes) -> tuple[str, bytearray, threading.Event]:
    """A pty whose far end answers each ENQ with ``reply``; its path, what it received, its stop switch."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    path, seen, stop = os.ttyname(slave), bytearray(), threading.Event()

    def run() -> None:
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.05)
            if r:
                try:
                    data = os.read(master, 1024)
                except OSError:
                    return
                seen.extend(data)
                if ENQ in data:
                    os.write(master, reply)
        os.close(master)
        os.close(slave)

    threading.Thread(target=run, daemon=True).start()
    return path, seen, stop


@pytest.mark.parametrize("reply", [bytes([NAK]), bytes([ENQ]), bytes([STX]) + b"0100000012345"],
                         ids=["NAK", "ENQ", "frame"])
def test_a_terminal_that_answers_the_probe_with_something_else_is_there(reply: bytes) -> None:
    path, seen, stop = fake_terminal(reply)
    try:
        [st] = DeviceRegistry([TpeProbe(link_for(path, **{**KW, "ack_timeout": 1.0}))]).refresh()
        time.sleep(0.1)
    finally:
        stop.set()
    assert st.state == "ready" and "the terminal is there" in st.detail, st
    assert bytes(seen) == bytes([ENQ])  # no EOT sent over what it wanted to say


def test_a_subscriber_that_blocks_does_not_freeze_the_probe(tmp_path: Path) -> None:
    with TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3) as sim:
        adapter = tmp_path / "ttyUSB0"
        adapter.symlink_to(sim.path)
        registry = DeviceRegistry([TpeProbe(link_for(str(adapter), **KW), interval=0.05, liveness=0.2,
                                            retry=0.2, first_check=0.0)])
        gate = threading.Event()

        def slow(st: DeviceState) -> None:
            if st.state == "ready":
                gate.wait(30)  # a consumer stuck on the news

        registry.subscribe(slow)
        registry.start()
        try:
            _wait(lambda: registry.states("tpe")[0].state == "ready")
            adapter.unlink()
            _wait(lambda: registry.states("tpe")[0].state == "absent")  # before: stuck at "ready"
        finally:
            gate.set()
            registry.stop()
    assert not registry.running


class Counting:
    kind, name, interval = "printer", "p", 0.05

    def __init__(self) -> None:
        self.inside = self.most = 0
        self.lock = threading.Lock()

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        stop.wait(0.2)  # a bounded blocking poll
        with self.lock:
            self.inside -= 1
        return [DeviceState("printer", "p", "ready")]

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_start_never_runs_two_loops_on_one_probe() -> None:
    probe = Counting()
    registry = DeviceRegistry([probe])
    registry.start()
    registry.start()
    time.sleep(0.5)
    registry.stop(timeout=0)  # the UI's
    registry.start()
    time.sleep(0.8)
    registry.stop()
    assert probe.most == 1
    assert not registry.running


class TwoReaders:
    kind, interval = "reader", 1.0

    def __init__(self, a: str, b: str) -> None:
        self.a, self.b = a, b

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        return [DeviceState("reader", "Contactless", self.a), DeviceState("reader", "Contact", self.b)]

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("a", "b", "shown"), [("ready", "card_present", "card_present"), ("ready", "error", "error"),
                                               ("ready", "absent", "absent"), ("ready", "unknown", "ready")])
def test_summary_shows_a_card_or_a_broken_reader_over_a_ready_one(a: str, b: str, shown: str) -> None:
    registry = DeviceRegistry([TwoReaders(a, b)])
    registry.refresh()
    assert registry.summary()["reader"].state == shown


class Broken:
    kind, name, interval = "printer", "usb://04b8:0202", 0.0

    def __init__(self) -> None:
        self.polls = 0

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        self.polls += 1
        raise OSError("[Errno 19] No such device")

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_probe_that_always_fails_backs_off_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    probe = Broken()
    caplog.set_level(logging.INFO, logger="guichet.devices")
    with DeviceRegistry([probe]) as registry:
        time.sleep(4.5)  # waits 1, 2, 4 s: 3 polls (before: one a second, a warning each)
        assert registry.states("printer")[0].state == "error"
    assert 1 <= probe.polls <= 4, probe.polls
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_symlink_loop_is_named_not_called_unplugged(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    [st] = DeviceRegistry([TpeProbe(link_for(str(a), **KW))]).refresh()
    assert st.state == "absent" and "symlink loop" in st.detail and "unplugged" not in st.detail


def _wait(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.02)


def test_probe_finds_the_printers_port_busy_and_writes_nothing() -> None:
    # tpe.port names the printer's adapter (USB renumbering): while the printer holds its port, the TPE probe
    # neither resets its speed nor writes ENQ into it.
    from drivers.printer.device import Printer

    path, seen, stop = fake_terminal(b"")
    try:
        dev = Printer(f"serial://{path}?baud=19200", timeout=1.0)._open()
        try:
            result = link_for(path, **KW).probe()
        finally:
            dev.close()
        time.sleep(0.1)
    finally:
        stop.set()
    assert result.kind == "busy" and "held by another program" in result.message, result
    assert bytes(seen) == b""


def test_no_probe_while_an_unknown_payment_may_still_be_answered() -> None:
    # The terminal took the amount and did not answer in time: it may still call back with the answer for
    # answer_timeout + cancel_grace; an ENQ of ours over it could lose that answer.
    with TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3, pin_delay=0.1) as sim:
        link = link_for(sim.path, **{**KW, "max_retries": 0, "answer_timeout": 0.5, "cancel_grace": 1.5})
        sim.script("no_answer")
        result = link.pay(1000, "DZD")
        assert result.kind == "timeout" and result.amount_sent
        registry = DeviceRegistry([TpeProbe(link, interval=0.05, liveness=0.2, retry=0.2, first_check=0.0)])
        with registry:
            time.sleep(1.5)  # liveness 0.2 s: before, several ENQ by now
        handshakes = [ex for ex in sim.exchanges if ex.outcome == "handshake"]
    assert handshakes == []
    assert registry.states("tpe")[0].state == "ready"  # it answered the exchange: there


def test_a_payment_waiting_for_a_probe_of_this_process_can_be_cancelled() -> None:
    from drivers.concert.base import port_lock

    with TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3) as sim:
        link = link_for(sim.path, **KW)
        cancel = threading.Event()
        with port_lock(link.lock_key):  # a probe of ours on the line
            threading.Timer(0.2, cancel.set).start()
            result = link.pay(1000, "DZD", cancel=cancel)
        assert result.kind == "cancelled" and not result.amount_sent
        assert sim.exchanges == []


def test_doctor_warns_about_a_ttyusb_name_and_still_asks_the_terminal(tmp_path: Path) -> None:
    # /dev/ttyUSBn follows the plugging order: after a reboot it may be the printer's adapter.
    from agent.doctor import Doctor, check_serial, tpe_check
    from config import load_config

    usb = Path(f"/dev/ttyUSB{90000 + os.getpid() % 10000}")  # a name no adapter of this machine has
    with TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3) as sim:
        usb.symlink_to(sim.path)
        try:
            cfg = load_config(write_config(tmp_path / "g.toml", "http://127.0.0.1:9/", tmp_path / "state",
                                           tpe={"port": str(usb), "baud": 115200, "framing": "8N1",
                                                "ack_timeout": 0.3}))
            serial_port = check_serial(cfg)
            d = Doctor(tmp_path / "g.toml", cfg)
            d.done["serial_port"] = serial_port
            tpe = tpe_check(d)
        finally:
            usb.unlink()
    assert serial_port.severity == "warning" and "plugging order" in serial_port.detail, serial_port
    assert "/dev/serial/by-id" in serial_port.fix
    assert tpe.ok and "ACK" in tpe.detail, tpe  # a warning on the name does not skip the terminal's check

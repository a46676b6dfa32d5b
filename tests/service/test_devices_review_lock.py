"""Review 4, findings 1, 2 and 6: the TPE's lock is one per terminal for every process of the machine, whatever
the transport. A liveness probe from another process (`guichet devices`, doctor, the headless service's
registry) never lands inside a payment: on a device path, on an E+ ``socket://`` URL (a serial device server
that forwards the line to every connection) and on Concert V3 over ``tcp://``; and a payment waiting for the
terminal never loses it to a stream of probes. Real processes, real ptys, the sandbox TPE simulators."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.concert import Approved, link_for
from drivers.concert.base import TerminalLock
from sandbox.tpe import TpeSimulator, V3Simulator

ROOT = str(Path(__file__).resolve().parents[2])
E_PLUS: dict[str, Any] = {"baud": 115200, "framing": "8N1", "ack_timeout": 0.5}

# Another process: one registry look (what `guichet devices` does) each time it reads a line, or a stream of
# probes until killed ("hammer"). It prints each state.
CHILD = r"""
import json, select, sys
sys.path.insert(0, sys.argv[1])
from agent.devices import DeviceRegistry, TpeProbe
from drivers.concert import link_for
port, kw, mode = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
link = link_for(port, max_retries=0, **kw)
print("go", flush=True)
if mode == "hammer":  # probes without a pause until told to stop; then how each went
    kinds = {}
    while not select.select([sys.stdin], [], [], 0)[0]:
        kind = link.probe().kind
        kinds[kind] = kinds.get(kind, 0) + 1
    print(json.dumps(kinds), flush=True)
    sys.exit(0)
for _ in sys.stdin:
    [st] = DeviceRegistry([TpeProbe(link)]).refresh()
    print(st.state, "|", st.detail, flush=True)
"""


@pytest.fixture(autouse=True)
def own_lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminal locks and their records in a directory of this test's (its child processes inherit it): a pty
    number reused from an earlier test, or another test run on the machine, brings no record along."""
    monkeypatch.setenv("GUICHET_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


class Other:
    """A second process probing the terminal at ``port``."""

    def __init__(self, port: str, kw: dict[str, Any], mode: str = "look") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, port, json.dumps(kw), mode],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        assert self.stdout.readline().strip() == "go"

    def look(self) -> str:
        self.stdin.write("go\n")
        self.stdin.flush()
        return self.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def counts(self) -> dict[str, int]:
        """Hammer mode: stop it and read how its probes went."""
        self.stdin.write("stop\n")
        self.stdin.flush()
        out: dict[str, int] = json.loads(self.stdout.readline())
        self.proc.wait(30)
        return out


class DeviceServer:
    """A serial device server in TCP server mode (a Moxa NPort allowing 2 connections): what the terminal
    sends goes to every connection, what any connection sends goes to the terminal."""

    def __init__(self, path: str) -> None:
        self.line = serial.Serial(path, 115200, timeout=0.01)
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopping = False
        for fn in (self._uart_to_net, self._accept):
            threading.Thread(target=fn, daemon=True).start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.srv.getsockname()[1]}"

    def _uart_to_net(self) -> None:
        while not self.stopping:
            try:
                data = self.line.read(256)
            except (serial.SerialException, OSError, TypeError):
                return
            with self.lock:
                for c in list(self.clients):
                    try:
                        c.sendall(data)
                    except OSError:
                        self.clients.remove(c)

    def _net_to_uart(self, c: socket.socket) -> None:
        while True:
            try:
                data = c.recv(256)
            except OSError:
                data = b""
            if not data:
                with self.lock:
                    if c in self.clients:
                        self.clients.remove(c)
                return
            self.line.write(data)

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                self.clients.append(c)
            threading.Thread(target=self._net_to_uart, args=(c,), daemon=True).start()

    def close(self) -> None:
        self.stopping = True
        self.srv.close()
        time.sleep(0.05)
        self.line.close()


@pytest.fixture
def slow_sim() -> Iterator[TpeSimulator]:
    s = TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.5, pin_delay=0.8).start()
    s.behaviour = "slow"
    yield s
    s.stop()


def _pay_while_other_looks(port: str, other: Other, amount: int = 1000) -> tuple[Any, str]:
    """This process pays; the other process looks once the payment holds the terminal."""
    payer = link_for(port, max_retries=1, answer_timeout=8, **E_PLUS)
    res: dict[str, Any] = {}
    t = threading.Thread(target=lambda: res.setdefault("r", payer.pay(amount, "DZD")))
    t.start()
    deadline = time.monotonic() + 5
    # what the other process sees: the lock file naming the payment (payer.busy is true as soon as this
    # process's thread lock is taken, a moment before the file lock that other processes go by)
    while "(payment)" not in payer.lock.holder() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert payer.busy and "(payment)" in payer.lock.holder()
    seen = other.look()
    t.join(30)
    return res["r"], seen


@pytest.mark.parametrize("transport", ["device path", "socket:// URL"])
def test_other_process_probe_is_busy_during_a_payment(slow_sim: TpeSimulator, transport: str) -> None:
    server = DeviceServer(slow_sim.path) if transport == "socket:// URL" else None
    port = server.url if server else slow_sim.path
    other = Other(port, E_PLUS)
    try:
        for i in range(3):
            result, seen = _pay_while_other_looks(port, other, 1000 + i)
            assert isinstance(result, Approved), result.message
            assert seen.startswith("busy |") and "pay" in seen, seen
    finally:
        other.close()
        if server:
            server.close()
    slow_sim.wait_idle()
    assert [ex.outcome for ex in slow_sim.exchanges] == ["approved"] * 3  # no ENQ of the other inside


def test_v3_other_process_probe_is_busy_during_a_payment() -> None:
    v3 = V3Simulator("127.0.0.1", 0, pin_delay=1.0).start()
    v3.behaviour = "slow"
    try:
        other = Other(v3.url.replace("tcp://", "caisse-ap://"), {"ack_timeout": 1.0})  # another spelling
        try:
            payer = link_for(v3.url, ack_timeout=1.0, answer_timeout=10)
            res: dict[str, Any] = {}
            t = threading.Thread(target=lambda: res.setdefault("r", payer.pay(1000, "DZD")))
            t.start()
            while not payer.busy:
                time.sleep(0.005)
            seen = other.look()
            t.join(30)
        finally:
            other.close()
        v3.wait_idle()
    finally:
        v3.stop()
    assert isinstance(res["r"], Approved)
    assert seen.startswith("busy |"), seen
    assert [ex.outcome for ex in v3.exchanges] == ["approved"]  # no connection of the other in the middle


@pytest.mark.parametrize("transport", ["device path", "socket:// URL"])
def test_payment_never_starved_by_another_process_probing_nonstop(transport: str) -> None:
    sim = TpeSimulator.on_pty(baud=115200, framing="8N1", ack_timeout=0.3, pin_delay=0.1).start()
    server = DeviceServer(sim.path) if transport == "socket:// URL" else None
    port = server.url if server else sim.path
    kw: dict[str, Any] = {"baud": 115200, "framing": "8N1", "ack_timeout": 0.3}
    other = Other(port, kw, mode="hammer")
    try:
        payer = link_for(port, max_retries=1, answer_timeout=8, **kw)
        results = Counter(type(payer.pay(1000 + i, "DZD")).__name__ for i in range(8))
        time.sleep(0.5)  # idle: now its probes reach the terminal
        probes = other.counts()
    finally:
        other.close()
        if server:
            server.close()
        sim.wait_idle()
        sim.stop()
    assert results == {"Approved": 8}, results
    assert probes["ready"] > 0 and probes["busy"] > 0, probes  # it did probe, and gave way


def test_lock_names_one_terminal_whatever_its_spelling(tmp_path: Path) -> None:
    # A /dev/serial/by-id link and the ttyUSBn it points to, or two spellings of one V3 terminal, are one lock.
    target = tmp_path / "ttyUSB0"
    target.touch()
    by_id = tmp_path / "usb-FTDI_TPE-if00-port0"
    by_id.symlink_to(target)
    assert link_for(str(by_id)).lock.path == link_for(str(target)).lock.path
    assert link_for("tcp://Tpe.local:8888?version=0320").lock.path == link_for("caisse-ap://tpe.local").lock.path
    assert link_for("socket://10.0.0.9:4001").lock.path != link_for("socket://10.0.0.9:4002").lock.path


def test_hostile_lock_file_is_ignored_not_trusted() -> None:
    lock = TerminalLock("socket://127.0.0.1:9")  # nothing listens on the discard port here
    for junk in (b"\xff\xfe", b"[1, 2]", b'{"heard": {"at": 1e308, "answered": true, "message": "x"}}',
                 b'{"pid": "1; rm", "role": "payment"}', b'{"pid": 1e400, "role": "payment"}',
                 b'{"pid": 99999999999999999999999, "role": "payment"}', b"{" * 5000, b"[" * 5000,
                 b'{"heard": {"at": 1, "answered": true, "message": "x", "answer_until": 1e9}}'):
        with open(lock.path, "wb") as f:
            f.write(junk)
        heard = lock.heard()
        assert (heard is None or heard.answer_until == 0.0) and lock.holder() == ""  # never a months-long pause
        with lock.hold("probe", wait=0) as held:  # still a working lock, and the record is rewritten
            assert lock.holder() == f"pid {__import__('os').getpid()} (probe)"
            held.write(heard=None)
    assert lock.record().keys() <= {"heard"}


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=5000),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=30),
                              lambda kids: st.lists(kids, max_size=4) | st.dictionaries(
                                  st.sampled_from(["pid", "role", "until", "heard", "at", "answered", "message",
                                                   "answer_until", "x"]), kids, max_size=6),
                              max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_any_lock_file_content_reads_as_nothing_or_a_bounded_record(raw: bytes) -> None:
    lock = TerminalLock("socket://127.0.0.1:7")  # the echo port: nothing listens on it here
    with open(lock.path, "wb") as f:
        f.write(raw)
    heard = lock.heard()
    if heard is not None:
        assert 0 <= heard.at <= time.monotonic() and len(heard.message) <= 200
        assert heard.answer_until == 0.0 or heard.at <= heard.answer_until <= heard.at + 3600
    assert isinstance(lock.holder(), str) and len(lock.holder()) < 60

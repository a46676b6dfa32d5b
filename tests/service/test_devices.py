"""The device registry (agent.devices) with real parts: a TPE simulator on a pty whose path vanishes and comes
back (a USB-serial adapter unplugged and plugged again), one that stops answering ENQ, a Caisse-AP (V3)
terminal over TCP on 127.0.0.1 switched off and on, a payment during which the liveness check stands aside,
the vpcd virtual reader, and the heartbeat as the sandbox billing server receives it."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from agent.devices import DeviceRegistry, DeviceState, ReaderProbe, TpeProbe
from drivers.concert import Approved, link_for
from sandbox.tpe import TpeSimulator, V3Simulator

FAST: dict[str, Any] = {"baud": 115200, "framing": "7E1", "ack_timeout": 0.3, "max_retries": 0}


@pytest.fixture(autouse=True)
def own_lock_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Terminal locks and their records in a directory of this test's (its child processes inherit it): a pty
    number reused from an earlier test, or another test run on the machine, brings no record along."""
    monkeypatch.setenv("GUICHET_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))


def e_plus(port: str, **kw: Any) -> TpeProbe:
    return TpeProbe(link_for(port, **{**FAST, **kw}), interval=0.05, liveness=0.2, retry=0.2)


def wait_state(registry: DeviceRegistry, kind: str, state: str, timeout: float = 15.0) -> DeviceState:
    """The registry's device of ``kind`` once it reaches ``state`` (bounded; fails naming what it saw)."""
    deadline = time.monotonic() + timeout
    seen: list[DeviceState] = []
    while time.monotonic() < deadline:
        seen = registry.states(kind)
        for st in seen:
            if st.state == state:
                return st
        time.sleep(0.02)
    raise AssertionError(f"{kind} never {state}: {seen}")


@pytest.fixture
def sim() -> Iterator[TpeSimulator]:
    s = TpeSimulator.on_pty(baud=115200, framing="7E1", ack_timeout=0.3, pin_delay=0.5).start()
    yield s
    s.stop()


@pytest.fixture
def changes() -> tuple[Callable[[DeviceState], None], queue.Queue[DeviceState]]:
    q: queue.Queue[DeviceState] = queue.Queue()
    return q.put, q


def test_usb_serial_tpe_unplugged_then_plugged_again(tmp_path: Path, sim: TpeSimulator, changes: Any) -> None:
    # A symlink we control stands for /dev/ttyUSB0: removed with the terminal gone, made again on the new
    # one (a pty path /dev/pts/N is reused by the kernel, so it cannot tell "gone" from "back" by itself).
    adapter = tmp_path / "ttyUSB0"
    adapter.symlink_to(sim.path)
    registry = DeviceRegistry([e_plus(str(adapter))])
    subscriber, seen = changes
    registry.subscribe(subscriber)
    with registry:
        ready = wait_state(registry, "tpe", "ready")
        assert ready.name == str(adapter) and "ACK" in ready.detail
        adapter.unlink()
        sim.stop()  # the pty pair closed: the terminal's side is gone too
        absent = wait_state(registry, "tpe", "absent")
        assert "does not exist" in absent.detail and absent.since >= ready.since
        with TpeSimulator.on_pty(baud=115200, framing="7E1", ack_timeout=0.3) as again:
            adapter.symlink_to(again.path)
            back = wait_state(registry, "tpe", "ready")
            assert back.since >= absent.since
            assert any(ex.outcome == "handshake" for ex in again.exchanges)  # it was asked, not assumed
    assert not registry.running
    states = _drain(seen)
    assert states[0] == "present"  # plugged in, not asked yet; then asked once idle for `liveness`
    assert states.index("ready") < states.index("absent") < len(states) - 1 and states[-1] == "ready"


def _drain(q: queue.Queue[DeviceState]) -> list[str]:
    out: list[str] = []
    while not q.empty():
        out.append(q.get_nowait().state)
    return out


def test_a_pty_that_disappears_is_absent(sim: TpeSimulator) -> None:
    registry = DeviceRegistry([e_plus(sim.path)])
    with registry:
        wait_state(registry, "tpe", "ready")
        assert os.path.exists(sim.path)
        sim.stop()
        assert not os.path.exists(sim.path)
        wait_state(registry, "tpe", "absent")


def test_a_terminal_that_stops_answering_enq_is_unresponsive_then_ready(sim: TpeSimulator) -> None:
    registry = DeviceRegistry([e_plus(sim.path)])
    with registry:
        wait_state(registry, "tpe", "ready")
        sim.behaviour = "silent"
        st = wait_state(registry, "tpe", "unresponsive")
        assert "no ACK" in st.detail
        sim.behaviour = "approve"
        wait_state(registry, "tpe", "ready")


def test_the_liveness_check_never_disturbs_a_payment(sim: TpeSimulator, changes: Any) -> None:
    # The probe runs as often as it can; the payment (0.5 s of PIN entry) must go through untouched, the
    # registry must say "busy" meanwhile, and no probe ENQ may land inside the exchange.
    probe = TpeProbe(link_for(sim.path, **FAST), interval=0.01, liveness=0.0, retry=0.0)
    registry = DeviceRegistry([probe])
    subscriber, seen = changes
    registry.subscribe(subscriber)
    payer = link_for(sim.path, **{**FAST, "ack_timeout": 1.0, "max_retries": 1, "answer_timeout": 10})
    with registry:
        wait_state(registry, "tpe", "ready")
        sim.behaviour = "slow"  # PIN entry takes pin_delay (0.5 s): the probe loop turns many times meanwhile
        result = payer.pay(123450, "DZD")
        wait_state(registry, "tpe", "ready")
    states = list(seen.queue)
    assert isinstance(result, Approved), result
    assert result.naks_received == 0 and result.naks_sent == 0
    busy = [st for st in states if st.state == "busy"]
    assert busy and "payment" in busy[0].detail, [st.state for st in states]
    assert sim.wait_idle()
    paid = [ex for ex in sim.exchanges if ex.request is not None]
    assert [ex.outcome for ex in paid] == ["approved"]
    others = {ex.outcome for ex in sim.exchanges if ex.request is None}
    assert others <= {"handshake"}, others


def test_starting_sends_the_terminal_nothing_and_a_payment_counts_as_the_check(sim: TpeSimulator) -> None:
    # The first liveness check waits `liveness` s of quiet: an agent (re)started at the counter does not
    # talk over a terminal in use; a payment's exchange is the check (its answer says the terminal is there).
    registry = DeviceRegistry([TpeProbe(link_for(sim.path, **FAST), interval=0.02, liveness=3600)])
    with registry:
        assert wait_state(registry, "tpe", "present").detail == "plugged in; asked when idle"
        sim.script("refuse")  # a scripted simulator shows nothing else came first: the script is the payment's
        result = link_for(sim.path, **FAST).pay(5000, "DZD")
        st = wait_state(registry, "tpe", "ready")
    assert type(result).__name__ == "Refused" and st.detail.startswith("answered the last exchange")
    assert [ex.outcome for ex in sim.exchanges] == ["refused"]


def test_busy_probe_touches_nothing(sim: TpeSimulator) -> None:
    from drivers.concert.base import Busy, port_lock

    link = link_for(sim.path, **FAST)
    with port_lock(sim.path):  # what pay() holds for its whole exchange
        assert link.busy
        assert isinstance(link.probe(), Busy)
        assert link.alive()  # busy paying is alive
    assert sim.exchanges == []
    assert not link.busy and link.alive()


def test_caisse_ap_terminal_over_tcp_switched_off_and_on() -> None:
    v3 = V3Simulator("127.0.0.1", 0).start()
    port = v3.port
    link = link_for(v3.url, ack_timeout=0.5, max_retries=0)
    registry = DeviceRegistry([TpeProbe(link, interval=0.05, liveness=0.1, retry=0.1)])
    with registry:
        try:
            assert "connection" in wait_state(registry, "tpe", "ready").detail
            v3.stop()  # switched off: nothing listens on its port any more
            down = wait_state(registry, "tpe", "absent")
            assert "cannot connect" in down.detail
            v3 = V3Simulator("127.0.0.1", port).start()  # on again, same address
            wait_state(registry, "tpe", "ready")
        finally:
            v3.stop()


class FlakyProbe:
    """A device kind whose probe raises, then recovers: the loop reports it and goes on."""

    kind = "printer"
    name = "flaky"
    interval = 0.01

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.closed = False

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        if self.failures:
            self.failures -= 1
            raise OSError("paper feed jammed\nsecond line never shown")
        return [DeviceState(self.kind, self.name, "ready")]

    def wake(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_a_probe_that_raises_is_an_error_state_and_the_loop_goes_on(changes: Any) -> None:
    registry = DeviceRegistry()
    subscriber, seen = changes
    def broken(st: DeviceState) -> None:
        raise ZeroDivisionError(st.state)

    registry.subscribe(broken)  # a broken subscriber does not stop the probes either
    registry.subscribe(subscriber)
    with registry:
        probe = registry.add(FlakyProbe(failures=2))  # joins a running registry: the printer's one line
        wait_state(registry, "printer", "ready")
    errors = [s for s in list(seen.queue) if s.state == "error"]
    assert errors and errors[0].detail == "OSError: paper feed jammed"
    assert isinstance(probe, FlakyProbe) and probe.closed


def test_heartbeat_devices_as_the_billing_server_receives_them(tmp_path: Path, billing_server: Any,
                                                                billing_config: Any, sim: TpeSimulator) -> None:
    from agent.billing import BillingClient
    from agent.journal import Journal
    from agent.sync import SyncWorker

    cfg = billing_config.model_copy(deep=True)
    cfg.tpe = cfg.tpe.model_copy(update={"port": sim.path, **FAST})
    registry = DeviceRegistry.from_config(cfg, readers=False, interval=0.05, liveness=0.2)
    journal = Journal.open(cfg.state.dir, terminal_id=cfg.terminal.id, agency_id=cfg.terminal.agency_id)
    client = BillingClient(cfg)
    try:
        worker = SyncWorker(cfg, journal, client, devices=registry.heartbeat)
        with registry:
            wait_state(registry, "tpe", "ready")
            assert worker.heartbeat() is not None
            sim.behaviour = "silent"
            wait_state(registry, "tpe", "unresponsive")
            assert worker.heartbeat() is not None
    finally:
        client.close()
        journal.close()
    r = requests.get(billing_server.url + "_sandbox/heartbeats", headers=billing_server.admin_headers(), timeout=10)
    bodies = [h["body"] for h in r.json()["items"]]
    assert [b["devices"] for b in bodies[-2:]] == [
        [{"kind": "tpe", "name": sim.path, "state": "ready"}],
        [{"kind": "tpe", "name": sim.path, "state": "unresponsive"}],
    ]


def test_heartbeat_is_bounded_as_the_contract_says() -> None:
    class Many:
        kind, name, interval = "reader", "many", 1.0

        def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
            return [DeviceState("reader", "r" * 500 + str(i), "ready") for i in range(100)]

        def wake(self) -> None: ...

        def close(self) -> None: ...

    registry = DeviceRegistry([Many()])
    registry.refresh()
    beat = registry.heartbeat()
    assert len(beat) == 64 and all(len(d["name"]) <= 200 and d["kind"] == "pcsc" for d in beat)


def _vpcd() -> tuple[str | None, str]:
    from tests.cards.conftest import _vpcd_reader

    return _vpcd_reader()


def test_reader_card_inserted_and_removed_through_pcsc_events() -> None:
    name, why = _vpcd()
    if name is None:
        if os.environ.get("CI"):
            pytest.fail(f"pcscd + vpcd are required in CI: {why}")
        pytest.skip(why)
    from sandbox.cards.card import VirtualCard
    from sandbox.cards.profiles import PROFILES
    from sandbox.cards.vpcd import VpcdLink
    from tests.cards.conftest import vpcd_lock, wait_presence

    registry = DeviceRegistry([ReaderProbe(name, wait=0.5)])
    with vpcd_lock():
        wait_presence(name, False)
        with registry:
            assert wait_state(registry, "reader", "ready").name == name
            link = VpcdLink(VirtualCard(PROFILES["cib"])).start()
            try:
                wait_state(registry, "reader", "card_present")
                assert registry.summary()["reader"].state == "card_present"
            finally:
                link.remove()
            wait_state(registry, "reader", "ready")
            wait_presence(name, False)
    assert not registry.running


def test_guichet_devices_lists_the_registry(tmp_path: Path, sim: TpeSimulator) -> None:
    import json
    import subprocess

    from tests.service.conftest import GUICHET, write_config

    cfg = write_config(tmp_path / "g.toml", "http://127.0.0.1:9/", tmp_path / "state", tpe={"port": sim.path, **FAST})
    # pcsc-lite honours PCSCLITE_CSOCK_NAME: a socket path where no pcscd listens.
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    r = subprocess.run([GUICHET, "--config", str(cfg), "devices", "--json"], capture_output=True, text=True,
                       timeout=60, env=env, stdin=subprocess.DEVNULL)
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["readers"] == []  # the pinned part: pcscd down is a failure
    devices = {d["kind"]: d for d in out["devices"]}
    assert devices["reader"]["state"] == "unavailable" and "pcscd" in devices["reader"]["detail"]
    assert devices["tpe"]["name"] == sim.path and devices["tpe"]["state"] == "ready"
    sim.behaviour = "silent"
    r = subprocess.run([GUICHET, "--config", str(cfg), "devices"], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert f"  tpe {sim.path}: unresponsive (no ACK" in r.stdout


def _hold(path: str, seconds: float) -> Any:
    """Another process holding the port as pyserial's exclusive lock does (a second agent's probe, a tool)."""
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import serial, sys, time\n"
         "s = serial.Serial(sys.argv[1], exclusive=True)\n"
         "print('held', flush=True)\n"
         "time.sleep(float(sys.argv[2]))\n", path, str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_port_another_program_holds_is_busy_and_the_probe_does_not_wait(sim: TpeSimulator) -> None:
    holder = _hold(sim.path, 60)
    try:
        [st] = DeviceRegistry([e_plus(sim.path)]).refresh()
    finally:
        holder.kill()
        holder.wait(10)
    assert st.state == "busy" and "held by another program" in st.detail
    assert sim.exchanges == []


def test_a_payment_waits_out_another_process_probe_instead_of_failing(sim: TpeSimulator) -> None:
    # Another process's probe holds the port for at most its ack_timeout: the payment opens it after.
    holder = _hold(sim.path, 0.3)
    try:
        result = link_for(sim.path, **{**FAST, "ack_timeout": 1.0, "max_retries": 1}).pay(100, "DZD")
    finally:
        holder.wait(10)
    assert isinstance(result, Approved), result


def test_line_noise_around_the_ack_still_reads_ready(sim: TpeSimulator) -> None:
    sim.behaviour = "garbage"  # noise bytes before each reply: the terminal is there
    [st] = DeviceRegistry([e_plus(sim.path)]).refresh()
    assert st.state == "ready"


def test_subscribers_hear_every_change_and_only_changes() -> None:
    """Property: whatever a probe reports poll after poll, replaying what subscribers heard gives the
    registry's snapshot, and an unchanged poll is never announced."""
    from hypothesis import given
    from hypothesis import strategies as st_

    names = st_.sampled_from(["a", "b", "c"])
    states = st_.sampled_from(["ready", "busy", "unresponsive", "error"])
    polls = st_.lists(st_.dictionaries(names, states, max_size=3), min_size=1, max_size=8)

    @given(polls)
    def check(sequence: list[dict[str, str]]) -> None:
        script = iter(sequence)

        class Scripted:
            kind, name, interval = "printer", "p", 0.0

            def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
                return [DeviceState("printer", n, s) for n, s in sorted(next(script).items())]

            def wake(self) -> None: ...

            def close(self) -> None: ...

        registry = DeviceRegistry([Scripted()])
        heard: list[DeviceState] = []
        registry.subscribe(heard.append)
        view: dict[str, str] = {}
        previous: dict[str, str] = {}
        for poll in sequence:
            before = len(heard)
            registry._poll_once(registry._probes[0], threading.Event())
            news = heard[before:]
            for s in news:
                if s.state == "absent" and s.detail == "no longer seen":
                    view.pop(s.name, None)
                else:
                    view[s.name] = s.state
            assert view == poll == {s.name: s.state for s in registry.snapshot()}
            changed = {n for n in poll if previous.get(n) != poll[n]} | {n for n in previous if n not in poll}
            assert {s.name for s in news} == changed and len(news) == len(changed)
            previous = dict(poll)

    check()

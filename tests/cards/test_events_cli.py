"""Card events for the agent, the `guichet devices` / `guichet card read` / `guichet sandbox card` commands."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.cards import CardError, CardInserted, CardRead, CardRemoved, CardWatcher, ReaderAdded
from drivers.pan import mask_pan
from sandbox.cards.profiles import PROFILES, TEST_PANS
from tests.cards.conftest import vpcd_lock, wait_presence

pytestmark = pytest.mark.pcsc

GUICHET = [sys.executable, "-m", "guichet"]  # the installed entry point's module


def _guichet(*args: str, config: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("GUICHET_CONFIG", None)
    cmd = [*GUICHET, *(["--config", str(config)] if config else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=Path(__file__).parents[2])


def _next(events: queue.Queue[Any], kind: type, timeout: float = 8.0) -> Any:
    """The next event of ``kind`` (others skipped), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind.__name__} event within {timeout} s")
        ev = events.get(timeout=left)
        if isinstance(ev, kind):
            return ev


def test_watcher_reports_cards_and_survives_bad_ones(insert: Any, vpcd_reader: str, cards_config: Any) -> None:
    events: queue.Queue[Any] = queue.Queue()
    # the slot for the whole watch: between two insertions another process's card would be read too
    with vpcd_lock(), CardWatcher(cards_config, events, poll=0.2) as watcher:
        assert _next(events, ReaderAdded).reader  # the readers already there are announced
        with insert("visa_cl"):
            ins = _next(events, CardInserted)
            assert ins.reader == vpcd_reader and ins.interface == "contactless"
            read = _next(events, CardRead)
            assert read.card.scheme == "VISA" and read.card.pan_masked == mask_pan(PROFILES["visa_cl"].pan)
            assert not read.card.has_pan  # events never carry the card number
        assert _next(events, CardRemoved).reader == vpcd_reader
        for bad, kind in [("pulled", "CardRemoved"), ("garbage_overrun", "CardDataError"),
                          ("garbage_6f00", "CardStatusError")]:
            with insert(bad):
                err = _next(events, CardError)
                assert err.kind == kind and err.message and "\n" not in err.message
            _next(events, CardRemoved)
        assert watcher.running
        with insert("edahabia"):  # the next card reads
            assert _next(events, CardRead).card.scheme == "EDAHABIA"
        assert watcher.running and watcher.reads == 2 and watcher.errors == 3
    assert not watcher.running


def test_watcher_callback_does_not_block_and_consumer_errors_do_not_kill_it(insert: Any, cards_config: Any) -> None:
    got: queue.Queue[Any] = queue.Queue()
    calls = 0

    def callback(ev: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a broken UI handler")
        got.put(ev)

    with vpcd_lock():  # the slot for the whole watch: no other process's card is read meanwhile
        t0 = time.monotonic()
        watcher = CardWatcher(cards_config, callback, poll=0.2).start()
        returned_in = time.monotonic() - t0
        try:
            assert returned_in < 5  # start() hands back at once; the work happens in the thread
            with insert("mastercard_cl"):
                assert _next(got, CardRead).card.scheme == "MASTERCARD"
        finally:
            watcher.stop()


def test_card_read_json_has_exactly_the_design_fields(insert: Any, config_file: Path, vpcd_reader: str) -> None:
    with insert("cib"):
        res = _guichet("card", "read", "--json", "--timeout", "5", config=config_file)
        devices = _guichet("devices", "--json", config=config_file)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert list(out) == ["reader", "atr", "interface", "aid", "label", "scheme", "pan_masked", "expiry",
                         "apdu_count", "elapsed_ms"]
    assert out["scheme"] == "CIB" and out["pan_masked"] == mask_pan(PROFILES["cib"].pan)
    assert out["apdu_count"] == PROFILES["cib"].expected_apdus
    assert out["reader"] == vpcd_reader and out["interface"] == "contact"
    assert not any(pan in res.stdout + res.stderr for pan in TEST_PANS)
    assert devices.returncode == 0, devices.stderr
    dev = json.loads(devices.stdout)
    assert {"name": vpcd_reader, "card_present": True, "atr": PROFILES["cib"].atr.hex().upper(),
            "interface": "contact"} in dev["readers"]
    assert isinstance(dev["serial_ports"], list)


def test_card_read_errors_are_one_line(insert: Any, config_file: Path, vpcd_reader: str) -> None:
    with insert("garbage_truncated"):
        res = _guichet("card", "read", "--timeout", "5", config=config_file)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("guichet: this card cannot be read: malformed answer to")
    with vpcd_lock():
        wait_presence(vpcd_reader, False)
        res = _guichet("card", "read", "--timeout", "0.3", config=config_file)
    assert res.returncode == 1 and "no card presented within 0.3 s" in res.stderr
    res = _guichet("card", "read", "--timeout", "-1", config=config_file)
    assert res.returncode == 2 and "--timeout" in res.stderr


def test_pcscd_unreachable_is_a_clear_error(config_file: Path, vpcd_reader: str) -> None:
    # What we can simulate of "the PC/SC service went away": the client pointed at a socket nobody serves.
    env = {"PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    res = _guichet("devices", "--json", config=config_file, env=env)
    assert res.returncode == 1 and "pcscd is not running" in res.stderr
    assert json.loads(res.stdout)["readers"] == []
    res = _guichet("card", "read", "--timeout", "1", config=config_file, env=env)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1] == "guichet: the smart card service (pcscd) is not running"


def test_sandbox_card_command_inserts_until_sigterm(vpcd_reader: str) -> None:
    with vpcd_lock():
        wait_presence(vpcd_reader, False)
        proc = subprocess.Popen([*GUICHET, "sandbox", "card", "--profile", "twoapps", "--counters", "none"],
                                stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
        try:
            wait_presence(vpcd_reader, True)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "card twoapps removed" in err
        wait_presence(vpcd_reader, False)


WATCHER_WITHOUT_PCSCD = r'''
import queue, sys, time
import config
from agent.cards import CardWatcher, PcscDown
events = queue.Queue()
w = CardWatcher(config.validate({}), events, poll=0.1).start()
ev = events.get(timeout=10)
time.sleep(1.5)  # it keeps retrying, quietly
print(type(ev).__name__, "|", ev.message, "|", w.running, "|", events.qsize())
w.stop()
print("stopped", not w.running)
'''


def test_watcher_survives_pcscd_being_unreachable() -> None:
    # pcsc-lite caches the socket path per process, so this runs in a subprocess of its own.
    res = subprocess.run([sys.executable, "-c", WATCHER_WITHOUT_PCSCD], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"},
                         cwd=Path(__file__).parents[2])
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.splitlines()
    assert first == "PcscDown | the smart card service (pcscd) is not running | True | 0"  # one event, not a flood
    assert second == "stopped True"


def test_the_vpcd_slot_nests_within_a_process_and_still_excludes_others(tmp_path: Path) -> None:
    """A test holding the slot around several insertions (each taking it again) must not lock itself out, and
    another process still waits for it."""
    from sandbox.cards.vpcd import slot

    lock = str(tmp_path / "slot.lock")
    other = [sys.executable, "-c", "import sys; from sandbox.cards.vpcd import slot\n"
             "with slot(timeout=0.5, path=sys.argv[1]) as mine: print(mine)", lock]
    with slot(path=lock) as outer:
        with slot(timeout=1, path=lock) as inner:
            assert outer and inner
        out = subprocess.run(other, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[2])
        assert out.stdout.strip() == "False", out.stderr  # still ours after the inner one ended
    out = subprocess.run(other, capture_output=True, text=True, timeout=30, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "True", out.stderr

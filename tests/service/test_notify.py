"""sd_notify against a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from agent.notify import Notifier, notify, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_ready_status_watchdog_stopping_arrive_as_datagrams(listener):
    path, sock = listener
    n = Notifier(path)
    assert n.ready(status="journal open; 0 queued")
    assert sock.recv(4096) == b"READY=1\nSTATUS=journal open; 0 queued"
    assert n.status("online, 3 queued (12 345,00 DZD), oldest 4 min")
    assert sock.recv(4096).decode() == "STATUS=online, 3 queued (12 345,00 DZD), oldest 4 min"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_status_is_utf8_and_one_line(listener):
    path, sock = listener
    n = Notifier(path)
    n.status("hors ligne depuis 09:14\nخادم غير متاح")
    text = sock.recv(4096).decode("utf-8")
    assert text == "STATUS=hors ligne depuis 09:14 خادم غير متاح"


def test_abstract_namespace_socket():
    name = f"guichet-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_quiet_no_op():
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False
    assert notify("READY=1", {}) is False


def test_a_vanished_socket_does_not_raise(tmp_path: Path):
    n = Notifier(str(tmp_path / "gone.sock"))
    assert n.status("x") is False
    assert n.last_error


def test_watchdog_interval_follows_sd_watchdog_enabled_rules():
    me = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "400000"}) == 0.4  # WATCHDOG_PID unset is accepted
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(me)}) == 0.4
    assert watchdog_interval({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(me + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
    n = Notifier.from_env({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "400000"})
    assert n.ping_interval == 0.2
    assert n.watchdog_due()  # never pinged yet

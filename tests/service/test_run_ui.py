"""`guichet run` (kiosk): how the UI path talks to systemd whether or not ui.app.run takes a notifier."""

from __future__ import annotations

import os

from agent.notify import Notifier
from guichet.cli.run import _run_ui


def test_ui_without_notifier_support_still_reports_ready_and_keeps_the_watchdog_fed(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    def ui_run(config):  # stands in for a UI whose run() knows nothing of systemd
        notify_socket.wait_for(lambda m: m.startswith("READY=1"))
        for _ in range(3):
            notify_socket.wait_for(lambda m: m == "WATCHDOG=1", timeout=10)
        return 0

    assert _run_ui(ui_run, config=None) == 0
    notify_socket.drain()
    assert notify_socket.messages[-1].startswith("STOPPING=1")


def test_ui_with_notifier_support_gets_it_and_sends_ready_itself(notify_socket, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    got: list[Notifier] = []

    def ui_run(config, *, notifier):
        got.append(notifier)
        notifier.ready(status="cashier UI ready")
        return 3

    assert _run_ui(ui_run, config=None) == 3
    assert got and got[0].enabled
    assert notify_socket.wait_for(lambda m: True) == "READY=1\nSTATUS=cashier UI ready"

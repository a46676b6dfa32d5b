"""Who may end the cashier UI, and how it ends when systemd stops it (review 6, findings 3 and 10).

At a counter (`guichet run`) Ctrl+Q is a supervisor's key: a cashier or a passer-by must not leave tty1 or
the kiosk without the UI. SIGTERM (systemctl stop) and SIGHUP (the kiosk's terminal hung up) end the UI
once no payment is in flight, never in the middle of one.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from tests.ui.conftest import SUPERVISOR, login, screen_name, type_into, wait_for
from ui.app import stop_on_signals

pytestmark = pytest.mark.anyio


async def test_ctrl_q_at_the_login_screen_asks_a_supervisor(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen", "the login screen")
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor's PIN")
        assert app.is_running
        await pilot.press("escape")  # nobody with a supervisor's PIN: the UI stays
        await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen", "back to the login screen")
        await pilot.press("ctrl+c")  # Textual's "Press ctrl+q to quit" hint (in English) is not shown
        await pilot.pause()
        assert app.is_running and not list(app._notifications)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor's PIN")
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: not app.is_running, "the UI to end")
    assert app.return_code == 0


async def test_ctrl_q_from_a_cashier_asks_a_supervisor_and_a_supervisor_quits_at_once(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor's PIN")
        assert app.is_running
    app.backend.close()  # the counter's lock: one payment taker at a time
    app2 = ui_app(run_sync=False)
    async with app2.run_test(size=(140, 44)) as pilot:
        await login(pilot, SUPERVISOR)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: not app2.is_running, "the UI to end")
    assert app2.return_code == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
async def test_a_stop_signal_waits_for_the_payment_in_flight(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str], sig: signal.Signals
) -> None:
    tpe_sim.script("silent")  # the terminal takes its time: the payment is in flight until cancelled
    cfg = tpe_config.model_copy(deep=True)
    cfg.tpe.ack_timeout = 30
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        restore = stop_on_signals(app)
        try:
            await login(pilot)
            ref = seeded_references[0]
            await type_into(pilot, "#reference", ref)
            await wait_for(pilot, lambda: any(b.reference == ref for b in app.screen.basket), "the bill")
            await pilot.press("f5")
            await wait_for(pilot, lambda: app.backend.payments_in_flight == 1, "the payment in flight")
            os.kill(os.getpid(), sig)
            await wait_for(pilot, lambda: app.stopping == sig.name, "the signal handled")
            await pilot.pause(0.2)
            assert app.is_running and screen_name(pilot) == "WaitScreen"  # the payment is still there
            await pilot.press("escape")
            await wait_for(pilot, lambda: not app.is_running, "the UI to end after the outcome")
        finally:
            restore()
    assert app.return_code == 0
    [p] = app.backend.journal.list(bill_reference=ref)
    assert p.state == "cancelled"  # the outcome was written before the UI ended


async def test_a_stop_signal_with_nothing_in_flight_ends_the_ui(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        restore = stop_on_signals(app)
        try:
            await login(pilot)
            os.kill(os.getpid(), signal.SIGTERM)
            await wait_for(pilot, lambda: not app.is_running, "the UI to end")
        finally:
            restore()
    assert app.return_code == 0


def test_the_ui_ends_when_its_terminal_went_away_without_reading_it(tmp_path: Any) -> None:
    """A kiosk's terminal or an SSH session that dies stops reading the UI: Textual's writes then block, its loop
    with them, and the counter's lock stays held. SIGHUP still ends the process (ui.app.end_if_stuck), cleanly
    (exit 0, not the signal's default death), once no payment is in flight."""
    import fcntl
    import struct
    import subprocess
    import sys
    import termios
    import time
    from pathlib import Path

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 45, 150, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    guichet = str(Path(sys.executable).with_name("guichet"))
    proc = subprocess.Popen([guichet, "demo", "--no-reader", "--state-dir", str(tmp_path)], stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    try:
        journal = tmp_path / "state" / "journal.db"
        for _ in range(600):  # the UI is up once its journal is open (nobody reads the terminal: no screen text)
            if journal.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert journal.exists(), "the demo never opened its journal"
        time.sleep(3)  # its first frames fill the terminal nobody reads: the UI's loop is now stuck writing
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)

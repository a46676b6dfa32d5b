"""Snapshots (pytest-textual-snapshot) of the main screens in French and Arabic.

Update after a deliberate change of the screens: `.venv/bin/pytest tests/ui/test_snapshots.py --snapshot-update`
and look at the SVGs under tests/ui/__snapshots__/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.widgets import Input

from agent.bills import Bill
from tests.ui.conftest import CASHIER, screen_name, wait_for
from ui.messages import LinkInfo, LookupResult, StatusUpdate

FIXED = datetime(2026, 11, 22, 9, 14, 3, tzinfo=UTC)
SIZE = (130, 36)

BILL = Bill(
    reference="410726095518",
    amount_due=345600,
    currency="DZD",
    status="unpaid",
    version=3,
    contract="07-118-00423",
    customer_name="B. Amel",
    service="water",
    period="2026-T3",
    issued_on="2026-10-05",
    due_on="2026-11-15",
    agency_id="ORAN-07",
    customer_id="C-0071182",
)


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def make(ui_app: Any, ui_config: Any, language: str, login: bool) -> Any:
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language = language
    cfg.ui.bidi = "app"
    app = ui_app(cfg, run_sync=False, clock=lambda: FIXED, auto_login=CASHIER if login else None)
    return app



async def open_screen(pilot: Any, key: str, name: str) -> None:
    """Press `key` until screen `name` is up: a key pressed while the login is still settling (a loaded
    machine stretches it) is ignored, as it would be for a cashier, who presses it again."""
    for _ in range(10):
        await pilot.press(key)
        try:
            await wait_for(pilot, lambda: screen_name(pilot) == name, name, rounds=40)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{key} never opened {name}")


async def settle_status(pilot: Any, online: bool | None) -> None:
    """Stop the status worker, then show a fixed link state: the bar must not depend on how fast the
    worker's first poll or a lookup's answer arrives (a loaded machine reorders them)."""
    app = pilot.app
    # A blinking cursor would show or not depending on when the shot is taken: hold it on, as a cashier
    # mostly sees it.
    for field in app.screen.query(Input):
        field.cursor_blink = False
    app.stop_event.set()
    app.status_wakeup.set()
    await wait_for(pilot, lambda: not any(w.name == "status" and w.is_running for w in app.workers),
                   "the status worker to stop")
    since = FIXED if online is False else None
    app.post_message(StatusUpdate(LinkInfo(online=online, since=since), app.queue))
    def shown() -> bool:
        bars = app._status_bars()
        return bool(bars) and all(b.link.online is online and b.link.since == since for b in bars)

    await wait_for(pilot, shown, "the fixed link state on the status bar")
    await pilot.pause(0.2)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_login_screen(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    app = make(ui_app, ui_config, language, login=False)

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query("#cashier-id"), "the login form")
        await settle_status(pilot, None)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_payment_screen_with_a_bill(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    app = make(ui_app, ui_config, language, login=True)

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the payment screen")
        pilot.app.screen.post_message(LookupResult(BILL.reference, BILL, []))
        await wait_for(pilot, lambda: pilot.app.screen.basket, "the bill shown")
        await settle_status(pilot, True)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_offline_bill_from_cache(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    from dataclasses import replace

    app = make(ui_app, ui_config, language, login=True)
    cached = replace(BILL, source="cache", cache_age=1260.0)

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the payment screen")
        pilot.app.screen.post_message(LookupResult(BILL.reference, cached, []))
        await wait_for(pilot, lambda: pilot.app.screen.basket, "the bill shown")
        await settle_status(pilot, False)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def _payment(n: int, state: str, method: str, amount: int, cashier: str = "c0042", **kw: Any) -> Any:
    """A journal row as the screens read it, at a fixed time (the real journal stamps the real clock)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        payment_id=f"p{n}", bill_reference=f"41072609{5500 + n:04d}", receipt_number=f"ORAN-07-G1-{n:06d}",
        amount=amount, currency="DZD", method=method, state=state, cashier_id=cashier,
        captured_at=f"2026-11-22T08:{10 + n:02d}:00+00:00", captured_offline=kw.get("offline", False),
        notice=kw.get("notice"), error=kw.get("error"),
    )


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_z_report(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    from datetime import timedelta

    from agent.cashiers import z_report
    from ui.messages import Loaded

    app = make(ui_app, ui_config, language, login=True)
    opened = FIXED - timedelta(hours=1, minutes=14)
    app.backend.cashiers.open_shift(CASHIER[0], now=opened)  # the login resumes it
    payments = [
        _payment(1, "uploaded", "card_terminal", 345600),
        _payment(2, "approved", "cash", 120050, offline=True),
        _payment(3, "uploaded", "cash", 98000, cashier="s0001"),
        _payment(4, "declined", "card_terminal", 50000),
        _payment(5, "rejected", "card_terminal", 210000, error="bill 410726095505 cancelled"),
        _payment(6, "uploaded", "cash", 75000, notice="credited_to_account"),
    ]
    report = z_report(payments, terminal_id="ORAN-07-G1", since=opened, until=FIXED).to_dict()

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the payment screen")
        await open_screen(pilot, "f7", "ZReportScreen")
        await wait_for(pilot, lambda: pilot.app.screen.report, "the report")
        pilot.app.screen.post_message(Loaded("z", report))
        await wait_for(pilot, lambda: pilot.app.screen.report is report, "the fixed report")
        await settle_status(pilot, None)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_unknown_outcomes(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    from ui.messages import Loaded

    app = make(ui_app, ui_config, language, login=True)
    rows = [_payment(1, "unknown", "card_terminal", 345600), _payment(2, "unknown", "card_reader", 98000)]

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the payment screen")
        await open_screen(pilot, "f6", "UnknownScreen")
        await wait_for(pilot, lambda: pilot.app.screen.message, "the journal's (empty) list")
        pilot.app.screen.post_message(Loaded("unknown", rows))
        await wait_for(pilot, lambda: pilot.app.screen.rows is rows, "the fixed rows")
        await settle_status(pilot, None)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)

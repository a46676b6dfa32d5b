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

from agent.bills import Bill
from tests.ui.conftest import CASHIER, screen_name, wait_for
from ui.messages import LookupResult

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



@pytest.mark.parametrize("language", ["fr", "ar"])
def test_login_screen(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    app = make(ui_app, ui_config, language, login=False)

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query("#cashier-id"), "the login form")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_payment_screen_with_a_bill(snap_compare: Any, ui_app: Any, ui_config: Any, language: str) -> None:
    app = make(ui_app, ui_config, language, login=True)

    async def ready(pilot: Any) -> None:
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the payment screen")
        pilot.app.screen.post_message(LookupResult(BILL.reference, BILL, []))
        await wait_for(pilot, lambda: pilot.app.screen.basket, "the bill shown")
        await pilot.pause(0.2)

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
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)

"""The cashier's day through Pilot, on the real journal, flow and sandbox billing server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


async def test_cash_payment_shows_receipt_and_is_journaled(ui_app: Any, seeded_references: list[str]) -> None:
    app = ui_app(run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        assert ref in text_of(pilot, "#bill") or app.screen.basket[0].reference == ref
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        receipt = text_of(pilot, "#receipt")
        payments = app.backend.journal.list(bill_reference=ref)
        assert len(payments) == 1 and payments[0].state == "approved"
        assert payments[0].receipt_number in receipt
        assert payments[0].cashier_id == "c0042"

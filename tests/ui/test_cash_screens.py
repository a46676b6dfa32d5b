"""Cash at the counter through Pilot, on the real journal, cashier file and sandbox server: stamp duty shown
before payment, amount tendered and change due, the drawer's opening float and its count with a supervisor
accepting a difference, the Z report with the duty apart, the server's view from the history (S)."""

from __future__ import annotations

from typing import Any

import pytest

from config.cash import CashConfig, StampDutyConfig
from tests.ui.conftest import SUPERVISOR, login, screen_name, text_of, type_into, wait_for
from ui.text import money

pytestmark = pytest.mark.anyio

RULE = StampDutyConfig(enabled=True, per_slice=100, slice=10000, minimum=500)


def _english(cfg: Any) -> Any:
    """The texts asserted below are the English ones."""
    cfg = cfg.model_copy(deep=True)
    cfg.ui.language = "en"
    return cfg


def _duty(amount: int) -> int:
    return max(500, -(-amount // 10000) * 100)


async def test_stamp_duty_tendered_and_change(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    cfg = _english(ui_config)
    cfg.cash = CashConfig(stamp_duty=RULE)
    app = ui_app(cfg, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        due = app.screen.basket[0].amount_due
        total = due + _duty(due)
        assert app.screen.due().total == total
        assert "Stamp duty" in text_of(pilot, "#total")
        # Less than the total to collect: refused, nothing written.
        await type_into(pilot, "#tendered", str(due // 100), enter=False)
        assert "Missing" in text_of(pilot, "#change")
        await pilot.press("f5")
        await wait_for(pilot, lambda: "less than" in text_of(pilot, "#message"), "the refusal")
        assert app.backend.journal.list() == []
        # Enough: the change is shown, then again with the receipt number.
        tendered = (total // 100 + 50) * 100
        await type_into(pilot, "#tendered", f"{tendered // 100}", enter=False)
        assert "Change due" in text_of(pilot, "#change")
        assert money(tendered - total, "DZD") in text_of(pilot, "#change")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        [p] = app.backend.journal.list()
        assert p.amount == due and p.stamp_duty == _duty(due)
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to payment")
        assert "change" in text_of(pilot, "#message").lower()


async def test_drawer_float_count_and_supervisor(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    app = ui_app(_english(ui_config), run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await login(pilot)
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
        await pilot.press("o")
        await wait_for(pilot, lambda: screen_name(pilot) == "OpeningFloatScreen", "the float")
        await type_into(pilot, "#float-amount", "5000")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "back to the Z report")
        await wait_for(pilot, lambda: "Opening float" in text_of(pilot, "#z-text"), "the float in the report")
        await pilot.press("d")
        await wait_for(pilot, lambda: screen_name(pilot) == "DrawerCountScreen", "the count")
        await wait_for(pilot, lambda: app.screen.expected == 500000, "what the drawer should hold")
        await type_into(pilot, "#n-200000", "2", enter=False)  # 4 000,00 DA: 1 000,00 DA short
        assert "Difference: -" in text_of(pilot, "#count-total")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "a supervisor asked")
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the count recorded")
        drawer = app.backend.cashiers.drawer(app.shift.shift_id)
        assert (drawer.counted, drawer.difference, drawer.accepted_by) == (400000, -100000, "s0001")
        await wait_for(pilot, lambda: "accepted by s0001" in text_of(pilot, "#z-text"), "the difference shown")


async def test_the_server_view_from_the_history(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    app = ui_app(_english(ui_config), run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        result = app.backend.flow.pay([app.backend.flow.lookup(seeded_references[0])], method="cash",
                                      cashier_id="c0042")
        app.backend.context.sync_worker().run_once()
        assert result.status == "approved"
        await pilot.press("f3")
        await wait_for(pilot, lambda: screen_name(pilot) == "HistoryScreen" and app.screen.shown, "the history")
        app.screen.query_one("#history-table").focus()
        await pilot.press("s")
        await wait_for(pilot, lambda: "On the server" in text_of(pilot, "#history-message"), "the server's view")
        assert "as here" in text_of(pilot, "#history-message")

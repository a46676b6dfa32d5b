"""Review 5, finding 1 through Pilot: a drawer counted, then a cash payment, then "Close the shift": the Z
report refuses and says to count again; counted again, the shift closes (real journal, cashier file, sandbox)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


async def test_a_count_made_before_a_payment_must_be_made_again(ui_app: Any, ui_config: Any,
                                                               seeded_references: list[str]) -> None:
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language = "en"
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 50)) as pilot:
        await login(pilot)
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
        await pilot.press("o")
        await wait_for(pilot, lambda: screen_name(pilot) == "OpeningFloatScreen", "the float")
        await type_into(pilot, "#float-amount", "0")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "back to the Z report")
        await pilot.press("d")
        await wait_for(pilot, lambda: screen_name(pilot) == "DrawerCountScreen", "the count")
        await wait_for(pilot, lambda: app.screen.expected == 0, "what the drawer should hold")
        await pilot.press("f5")  # an empty drawer, as expected
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the count recorded")
        paid = app.backend.flow.pay([app.backend.flow.lookup(seeded_references[0])], method="cash",
                                    cashier_id="c0042")
        assert paid.status == "approved"
        await pilot.click("#z-close")
        await wait_for(pilot, lambda: "Press again" in text_of(pilot, "#z-message"), "asked to confirm")
        await pilot.pause(0.6)  # two clicks at once would be read as one double click
        await pilot.click("#z-close")
        await wait_for(pilot, lambda: "count it again" in text_of(pilot, "#z-message"), "the stale count refused")
        assert app.backend.cashiers.shift(app.shift.shift_id).closed_at is None
        drawer = app.backend.cashiers.drawer(app.shift.shift_id)
        assert drawer.counted == 0 and drawer.expected == 0

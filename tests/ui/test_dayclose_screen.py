"""The day's close screen through Pilot (Z report, C, supervisor): the TPE ticket's totals typed, the close run
against the sandbox server, each payment's line shown, the run kept and exported as CSV and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.dayclose import DayCloseStore
from tests.ui.conftest import SUPERVISOR, login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


async def test_a_supervisor_closes_the_day(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language = "en"  # the texts asserted below are the English ones
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await login(pilot)
        flow = app.backend.flow
        paid = flow.pay([flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042").payments[0]
        assert app.backend.context.sync_worker().run_once().uploaded == 1
        queued = flow.pay([flow.lookup(seeded_references[1])], method="cash", cashier_id="c0042").payments[0]
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
        await pilot.press("c")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "a supervisor asked")
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: screen_name(pilot) == "DayCloseScreen", "the day close screen")
        await type_into(pilot, "#tpe-count", "1", enter=False)  # the TPE took none: its ticket disagrees
        await type_into(pilot, "#tpe-amount", "10", enter=False)
        await pilot.press("f5")
        await wait_for(pilot, lambda: app.screen.data is not None, "the close")
        data = app.screen.data
        lines = {line["payment_id"]: line["kind"] for line in data["lines"]}
        assert lines == {paid.payment_id: "matched", queued.payment_id: "queued"}
        assert data["tpe"]["agrees"] is False and data["tpe"]["entered_by"] == SUPERVISOR[0]
        summary = text_of(pilot, "#dayclose-summary")
        assert "TPE" in summary and "DIFFERS" in summary
        # One payment still queued here: the journal's money and the server's day differ by it (review 5).
        assert "the server's DIFFER: 2 and 1 payments" in summary
        assert app.screen.query_one("#dayclose-lines").row_count == len(data["lines"])
        with DayCloseStore.open(app.config.state.dir) as store:
            assert store.runs()[0]["run_by"] == SUPERVISOR[0]
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: "Exported" in text_of(pilot, "#dayclose-message"), "the export")
        folder = Path(app.config.state.dir) / "dayclose"
        exported = sorted(folder.iterdir())
        assert [p.suffix for p in exported] == [".csv", ".json"]
        assert json.loads(exported[1].read_text())["run_id"] == data["run_id"]


async def test_the_close_printed_while_the_paper_is_out_waits_in_the_print_queue(
        ui_app: Any, ui_config: Any, seeded_references: list[str], tmp_path: Path) -> None:
    from agent.printing import PrintQueue
    from sandbox.printer import VirtualPrinter

    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = ui_config.model_copy(deep=True)
        cfg.ui.language = "en"
        cfg.printer.url = vp.url
        app = ui_app(cfg, run_sync=False)
        async with app.run_test(size=(160, 50)) as pilot:
            await login(pilot)
            await pilot.press("f7")
            await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
            await pilot.press("c")
            await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "a supervisor asked")
            await type_into(pilot, "#sup-id", SUPERVISOR[0])
            await type_into(pilot, "#sup-pin", SUPERVISOR[1])
            await wait_for(pilot, lambda: screen_name(pilot) == "DayCloseScreen", "the day close screen")
            await pilot.press("f5")
            await wait_for(pilot, lambda: app.screen.data is not None, "the close")
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: "Waiting for the printer" in text_of(pilot, "#dayclose-message"),
                           "the close queued for the printer")
        queue = PrintQueue.open(cfg.state.dir)
        try:
            assert queue.count() == 1  # printed by the print-queue job once the paper is back
        finally:
            queue.close()

"""Review 5, finding 9: the server's text is shown as text, never read as Textual markup. A billing server
(a stub on 127.0.0.1, over real HTTP) answers a bill reference "[/]" or "[@click=app.quit]...": the history's
S and the day close's table show it as it is, and the counter goes on."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from rich.text import Text

from agent.billing import BillingClient
from tests.core.conftest import with_changes
from tests.core.stub_server import StubServer, json_answer
from tests.ui.conftest import SUPERVISOR, login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio

HOSTILE = "[@click=app.quit]410726095518[/]"


def _english(cfg: Any) -> Any:
    cfg = cfg.model_copy(deep=True)
    cfg.ui.language = "en"
    return cfg


def _hostile_server(paid: dict[str, Any], terminal_id: str) -> StubServer:
    captured = datetime.now().astimezone().isoformat()
    item = {"payment_id": "ghost-1", "transaction_id": "ghost-1", "bill_reference": "[/]", "amount": 1200,
            "currency": "DZD", "stamp_duty": 0, "method": "cash", "receipt_number": "[b]R-1",
            "captured_at": captured}

    def answer(method: str, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        if "/payments/" in path:  # GET /v1/payments/{id}: ours, with a hostile bill reference
            return json_answer(200, {**paid, "status": "recorded", "terminal_id": terminal_id,
                                     "bill_reference": HOSTILE})
        if "/terminals/" in path:
            return json_answer(200, {"items": [item], "next_cursor": None,
                                     "totals": {"count": 1, "amount": {"DZD": 1200}}})
        return json_answer(404, {"error": {"code": "not_found", "message": "no"}})

    return StubServer(answer)


async def test_server_text_is_never_markup(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    app = ui_app(_english(ui_config), run_sync=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await login(pilot)
        flow = app.backend.flow
        result = flow.pay([flow.lookup(seeded_references[0])], method="cash", cashier_id="c0042")
        assert app.backend.context.sync_worker().run_once().uploaded == 1
        paid = result.payments[0]
        record = {k: v for k, v in paid.to_api().items() if k in ("payment_id", "amount", "currency", "method")}
        with _hostile_server(record, app.config.terminal.id) as stub:
            real = app.backend.context.client
            app.backend.context.client = BillingClient(with_changes(app.config, server={"url": stub.url}))
            try:
                await pilot.press("f3")
                await wait_for(pilot, lambda: screen_name(pilot) == "HistoryScreen" and app.screen.shown,
                               "the history")
                app.screen.query_one("#history-table").focus()
                await pilot.press("s")
                await wait_for(pilot, lambda: "On the server" in text_of(pilot, "#history-message"), "the view")
                assert app.is_running and HOSTILE in text_of(pilot, "#history-message")
                await pilot.press("escape")
                await pilot.press("f7")
                await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen", "the Z report")
                await pilot.press("c")
                await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "a supervisor asked")
                await type_into(pilot, "#sup-id", SUPERVISOR[0])
                await type_into(pilot, "#sup-pin", SUPERVISOR[1])
                await wait_for(pilot, lambda: screen_name(pilot) == "DayCloseScreen", "the day close")
                await pilot.press("f5")
                await wait_for(pilot, lambda: app.screen.data is not None, "the close")
                assert app.is_running
                table = app.screen.query_one("#dayclose-lines")
                cells = [c.plain if isinstance(c, Text) else str(c)
                         for r in range(table.row_count) for c in table.get_row_at(r)]
                assert "[/]" in cells and "[b]R-1" in cells, json.dumps(cells)
            finally:
                app.backend.context.client.close()
                app.backend.context.client = real

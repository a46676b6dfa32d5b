"""Text from outside is shown as it is, never read as Textual markup: a customer's name from the billing server
(the sandbox over real HTTP) on the receipt, a cashier's name from the real cashiers file on the accounts screen,
what is typed into the login and supervisor prompts, the server's refusal on the unknown outcomes screen. A "[/]"
would raise MarkupError and end the counter, "[@click=app.quit]x" would be a clickable action, an ESC would reach
the terminal: the app goes on and the cashier reads the text literally."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.widgets import Button, DataTable

from agent.outbox import Outbox, parse_address
from tests.core.conftest import with_changes
from tests.ui.conftest import CASHIER, SUPERVISOR, login, screen_name, text_of, type_into, wait_for
from ui.plain import plain, visible
from ui.screens.receipt import ReceiptScreen

pytestmark = pytest.mark.anyio

NAME = "[@click=app.quit]x [/] [b]Amel"  # a name the accounts' rule allows (printable, 64 at most)
ESC = "\x1b[31m"
REFUSAL = "[/] [@click=app.quit]x [b]"  # the server's words


def shown_cells(table: DataTable[Any]) -> list[str]:
    """What the table shows: it reads a str cell as markup (DataTable's cell formatter), a rich Text as it is."""
    return [c.plain if isinstance(c, Text) else Text.from_markup(str(c)).plain
            for r in range(table.row_count) for c in table.get_row_at(r)]


def _english(cfg: Any) -> Any:
    return with_changes(cfg, ui={"language": "en"})


def test_plain_keeps_the_text_and_shows_control_characters() -> None:
    for hostile in ("[/]", "[@click=app.quit]x", "[b]", NAME):
        assert plain(hostile).plain == hostile and not plain(hostile).spans
    assert visible(ESC) == "\\x1b[31m" and visible("a\nb\tc\x9b") == "a\nb\\x09c\\x9b"


async def test_the_servers_customer_name_on_the_receipt(ui_app: Any, ui_config: Any, billing_server: Any,
                                                        seeded_references: list[str]) -> None:
    ref = seeded_references[0]
    billing_server.put_bill(reference=ref, customer_name=NAME)
    app = ui_app(_english(ui_config), run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        assert app.is_running and NAME in text_of(pilot, "#receipt")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to the payment screen")
        # The server refused the SMS with its own words (journaled by the send job): the history's receipt says so.
        [paid] = app.backend.journal.list(bill_reference=ref)
        box = Outbox.open(app.config.state.dir)
        try:
            box.refused(box.add(paid.receipt_number, parse_address("0661234567"), language="en"), REFUSAL)
        finally:
            box.close()
        app.push_screen(ReceiptScreen([paid], reprint=True))
        await wait_for(pilot, lambda: "refused" in text_of(pilot, "#send-status"), "the earlier request")
        assert app.is_running and "[/] [@click=app.quit]x" in text_of(pilot, "#send-status")
        assert NAME in text_of(pilot, "#receipt")


async def test_typed_ids_and_a_stored_name_on_login_supervisor_and_accounts(ui_app: Any, ui_config: Any) -> None:
    app = ui_app(_english(ui_config), run_sync=False)
    app.backend.cashiers.add("c0666", NAME, "1357")  # the real cashiers file holds the name as typed
    async with app.run_test(size=(150, 44)) as pilot:
        await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen" and app.screen.query("#cashier-id"),
                       "the login form")
        for typed in ("[/]", ESC + "x"):  # refused without being read as markup (nor echoed: no id guessing)
            await type_into(pilot, "#cashier-id", typed)
            await type_into(pilot, "#pin", "0000")
            await wait_for(pilot, lambda: "wrong PIN" in text_of(pilot, "#login-error"), f"{typed!r} refused")
            assert app.is_running and "\x1b" not in text_of(pilot, "#login-error")
            app.screen.query_one("#login-error").update("")
        await login(pilot, CASHIER)

        await pilot.press("f12")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor prompt")
        await type_into(pilot, "#sup-id", "[@click=app.quit]x")
        await type_into(pilot, "#sup-pin", "0000")
        await wait_for(pilot, lambda: "wrong PIN" in text_of(pilot, "#sup-error"), "the id refused")
        assert app.is_running
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: screen_name(pilot) == "CashiersScreen" and app.screen.rows, "the accounts")
        table = app.screen.query_one("#cashiers-table", DataTable)
        cells = shown_cells(table)
        assert NAME in cells, cells
        table.move_cursor(row=[c.cashier_id for c in app.screen.rows].index("c0666"))
        await wait_for(pilot, lambda: NAME in text_of(pilot, "#cashier-events"), "the account's events")
        app.screen.query_one("#c-unlock", Button).press()
        await wait_for(pilot, lambda: "c0666 unlocked" in text_of(pilot, "#cashiers-message"), "unlocked")
        assert app.is_running and screen_name(pilot) == "CashiersScreen"


async def test_a_journaled_cashier_id_on_the_unknown_outcomes_screen(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    """A journal written before `guichet pay --cashier` was checked holds "[/]..." as a cashier id: F6 lists it."""
    hostile = "[@click=app.quit]x[/][b]"  # as markup: a click action, then "x"
    tpe_sim.script("no_answer")
    app = ui_app(_english(tpe_config), run_sync=False)
    flow = app.backend.flow
    result = flow.pay([flow.lookup(seeded_references[0])], method="card_terminal", cashier_id=hostile)
    assert result.status == "unknown"
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        if screen_name(pilot) != "UnknownScreen":
            await pilot.press("f6")
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen" and app.screen.rows, "the unknown list")
        table = app.screen.query_one("#unknown-table", DataTable)
        cells = shown_cells(table)
        assert hostile in cells, cells
        app.screen.query_one("#settle-declined", Button).press()  # first press: asks to confirm
        await wait_for(pilot, lambda: "Press Declined again" in text_of(pilot, "#unknown-message"), "the question")
        assert app.is_running and screen_name(pilot) == "UnknownScreen"

"""Z report, history/reprint/audit, languages, the scanner burst, partial amounts: through Pilot."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Button, RadioButton

from config.schema import PaymentsConfig
from tests.ui.conftest import SUPERVISOR, login, screen_name, text_of, type_into, wait_for
from tests.ui.test_flow import pay_one

pytestmark = pytest.mark.anyio


async def choose_method(pilot: Any, method: str) -> None:
    for rb in pilot.app.screen.query(RadioButton):
        if rb.name == method:
            rb.value = True
    await wait_for(pilot, lambda: pilot.app.screen.method == method, f"method {method}")


async def test_z_report_totals_equal_the_journal(
    ui_app: Any, tpe_config: Any, seeded_references: list[str]
) -> None:
    app = ui_app(tpe_config, run_sync=False)
    refs = seeded_references[:3]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        for ref, method in zip(refs, ["card_terminal", "cash", "cash"], strict=True):
            await choose_method(pilot, method)
            await pay_one(pilot, ref)
            await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", f"receipt of {ref}")
            await pilot.press("enter")
            await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to payment")
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen" and app.screen.report, "the Z report")
        rep = app.screen.report
        journal = app.backend.journal.list()
        expect: dict[str, int] = {}
        for p in journal:
            expect[p.method] = expect.get(p.method, 0) + p.amount
        got = {m: t["amounts"]["DZD"] for m, t in rep["by_method"].items()}
        assert got == expect
        assert rep["total"]["amounts"]["DZD"] == sum(p.amount for p in journal)
        assert rep["by_cashier"]["c0042"]["count"] == 3
        assert rep["online"]["count"] == 3 and rep["offline"]["count"] == 0
        # Closing the shift keeps the same report with it and logs out.
        close = app.screen.query_one("#z-close", Button)
        close.press()
        await pilot.pause()
        close.press()
        await wait_for(pilot, lambda: app.screen.closed, "the shift closed")
        shift = app.backend.cashiers.shift(app.shift.shift_id)
        assert shift.closed_at and shift.z_report["by_method"] == rep["by_method"]
        close.press()
        await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen", "logged out")


async def test_history_search_reprint_and_supervisor_audit(ui_app: Any, seeded_references: list[str]) -> None:
    app = ui_app(run_sync=False)
    refs = seeded_references[:2]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        for ref in refs:
            await pay_one(pilot, ref)
            await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", f"receipt of {ref}")
            await pilot.press("enter")
        await pilot.press("f3")
        await wait_for(pilot, lambda: screen_name(pilot) == "HistoryScreen" and len(app.screen.all) == 2, "history")
        await type_into(pilot, "#search", refs[1], enter=False)
        await wait_for(pilot, lambda: len(app.screen.shown) == 1, "the search")
        assert app.screen.shown[0].bill_reference == refs[1]
        await pilot.press("enter")  # to the table
        await pilot.press("enter")  # reprint the selected row
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the reprint")
        receipt = text_of(pilot, "#receipt")
        assert "DUPLICATA" in receipt and app.screen.payments[0].receipt_number in receipt
        await pilot.press("escape")
        # A cashier asking for the audit trail is asked for a supervisor's PIN.
        await pilot.press("a")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor prompt")
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", "000000")
        await wait_for(pilot, lambda: "erron" in text_of(pilot, "#sup-error").lower(), "a wrong PIN refused")
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: screen_name(pilot) == "AuditScreen", "the audit trail")
        from textual.widgets import DataTable

        table = app.screen.query_one("#audit-table", DataTable)
        await wait_for(pilot, lambda: table.row_count >= 3, "audit rows")
        actors = {str(table.get_row_at(i)[3]) for i in range(table.row_count)}
        assert "c0042" in actors


async def test_language_switch_at_run_time_and_right_to_left(ui_app: Any, seeded_references: list[str]) -> None:
    from textual.widgets import DataTable

    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        assert "Paiement" in text_of(pilot, "#title")
        await type_into(pilot, "#reference", seeded_references[0])
        await wait_for(pilot, lambda: app.screen.basket, "the bill in the basket")
        await pilot.press("f8")  # fr -> ar
        await wait_for(pilot, lambda: app.screen.has_class("-rtl"), "the Arabic layout")
        # The screen is composed again in Arabic; its tables are filled again from its state.
        await wait_for(pilot, lambda: app.screen.query_one("#basket", DataTable).row_count == 1, "the basket kept")
        title = text_of(pilot, "#title")
        # Reshaped (presentation forms) and reordered for the terminal: not the logical string.
        assert "الدفع" not in title and any("\ufe70" <= ch <= "\ufeff" for ch in title)
        assert any("\ufe70" <= ch <= "\ufeff" for ch in text_of(pilot, "#sb-queue"))
        await pilot.press("f8")  # ar -> en
        await wait_for(pilot, lambda: "Payment" in text_of(pilot, "#title"), "English")
        assert not app.screen.has_class("-rtl")


async def test_arabic_left_to_the_terminal_when_bidi_is_terminal(ui_app: Any, ui_config: Any) -> None:
    cfg = ui_config.model_copy(deep=True)
    cfg.ui.language, cfg.ui.bidi = "ar", "terminal"
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        assert "الدفع" in text_of(pilot, "#title")  # logical order, unshaped


async def test_scanner_burst_lands_in_the_reference_field(ui_app: Any, seeded_references: list[str]) -> None:
    app = ui_app(run_sync=False)
    ref = seeded_references[1]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        app.screen.query_one("#pay", Button).focus()  # focus away from the field
        await pilot.press(*list(ref), "enter")
        await wait_for(pilot, lambda: app.screen.basket, "the scanned bill")
        assert app.screen.basket[0].reference == ref


async def test_partial_amount_when_allowed(ui_app: Any, ui_config: Any, seeded_references: list[str]) -> None:
    cfg = ui_config.model_copy(deep=True)
    cfg.payments = PaymentsConfig(default_method="cash", methods=["cash"], allow_partial=True)
    app = ui_app(cfg, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill")
        due = app.screen.basket[0].amount_due
        amount = app.screen.query_one("#amount")
        assert not amount.disabled
        amount.value = "100.00"
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        [p] = app.backend.journal.list(bill_reference=ref)
        assert p.amount == 10000 < due


async def test_partial_amount_refused_when_not_allowed(ui_app: Any, seeded_references: list[str]) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", seeded_references[0])
        await wait_for(pilot, lambda: app.screen.basket, "the bill")
        assert app.screen.query_one("#amount").disabled  # full amount only


async def test_customer_other_bills_join_the_basket(ui_app: Any, seeded_references: list[str]) -> None:
    app = ui_app(run_sync=False)
    ref = seeded_references[0]  # its customer holds 3 unpaid bills
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.others, "the customer's other bills")
        await pilot.press("f9")
        assert len(app.screen.basket) == 3
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        payments = app.screen.payments
        assert len(payments) == 3 and len({p.transaction_id for p in payments}) == 1


async def test_attention_lists_a_payment_credited_to_the_account(
    ui_app: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    app = ui_app(status_interval=0.1)
    ref = seeded_references[0]
    async with app.run_test(size=(160, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the bill")
        billing_server.put_bill(reference=ref, status="paid", amount_due=0)  # paid elsewhere meanwhile
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        await pilot.press("enter")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "1 à traiter" in text_of(pilot, "#sb-queue"), "the notice in the status bar")
        await pilot.press("f4")
        await wait_for(pilot, lambda: screen_name(pilot) == "HistoryScreen" and app.screen.shown, "the list")
        [p] = app.screen.shown
        assert p.bill_reference == ref and p.notice == "credited_to_account"
        from textual.widgets import DataTable

        row = app.screen.query_one("#history-table", DataTable).get_row_at(0)
        assert "crédité sur le compte du client" in [str(c) for c in row]


async def test_first_run_creates_the_first_supervisor(ui_config: Any) -> None:
    from agent.cashiers import CashierStore
    from ui.app import GuichetApp
    from ui.backend import Backend

    backend = Backend.open(ui_config)
    try:
        app = GuichetApp(backend, run_sync=False)
        async with app.run_test(size=(140, 44)) as pilot:
            await wait_for(pilot, lambda: app.screen.query("#name"), "the first-run form")
            await type_into(pilot, "#name", "Karim S.", enter=False)
            await type_into(pilot, "#cashier-id", "s0001", enter=False)
            await type_into(pilot, "#pin", "917355")
            await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "logged in")
            assert app.cashier.is_supervisor and app.shift is not None
    finally:
        backend.close()
    store = CashierStore.open(ui_config.state.dir)
    assert [c.cashier_id for c in store.list()] == ["s0001"]
    store.close()


async def test_log_out_and_back_in_resumes_the_shift(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        shift = app.shift.shift_id
        await pilot.press("f10")
        await wait_for(pilot, lambda: screen_name(pilot) == "LoginScreen", "the login screen")
        await login(pilot)
        assert app.shift.shift_id == shift


async def test_status_figures_arriving_while_the_bar_is_rebuilt_are_kept(ui_app: Any) -> None:
    """Quitting prunes each screen's widgets before the screen leaves the stack, and F8 recomposes every
    screen: a status update from the worker in that moment found a bar without its parts and crashed the
    app (NoMatches). The update must be taken, and the figures shown by the bar composed next."""
    from textual.widgets import Static

    from ui.messages import DeviceUpdate, LinkInfo, QueueInfo, StatusUpdate
    from ui.widgets.status_bar import StatusBar

    app = ui_app(run_sync=False, status_interval=3600)  # the status worker's own figures stay out of it
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        bar = app.screen.query_one(StatusBar)
        await bar.query_children(Static).remove()  # what pruning does first
        app.post_message(StatusUpdate(LinkInfo(online=False), QueueInfo(count=2, total={"DZD": 150000})))
        app.post_message(DeviceUpdate("reader", "absent"))
        await pilot.pause()
        bar._tick()  # the clock's timer can fire in the same moment
        assert app.is_running and app.queue.count == 2
        app.set_language("fr")  # composes every screen again, with a new bar
        await wait_for(pilot, lambda: "Non transmis : 2" in text_of(pilot, "#sb-queue"), "the kept figures")
        assert "Hors ligne" in text_of(pilot, "#sb-link") and "absent" in text_of(pilot, "#sb-devices")


async def test_the_z_report_shows_the_agency_hour_not_the_machine_one(ui_app: Any, ui_config: Any) -> None:
    """A counter PC left on UTC in an agency at UTC+9 (a zone far from both, so that a mix-up shows): the Z report's
    period is printed in `[terminal] timezone`, the hour of the agency's business day."""
    from datetime import UTC, datetime, timedelta

    cfg = ui_config.model_copy(deep=True)
    cfg.terminal.timezone = "Asia/Tokyo"
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pilot.press("f7")
        await wait_for(pilot, lambda: screen_name(pilot) == "ZReportScreen" and app.screen.report, "the Z report")
        until = datetime.fromisoformat(app.screen.report["until"].replace("Z", "+00:00"))
        tokyo = until.astimezone(UTC) + timedelta(hours=9)
        shown = text_of(pilot, "#z-text")
        assert f"{tokyo:%H:%M}" in shown and f"{tokyo:%d/%m/%Y}" in shown, shown[:400]

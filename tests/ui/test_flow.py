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


async def pay_one(pilot: Any, ref: str) -> None:
    app = pilot.app
    await type_into(pilot, "#reference", ref)
    await wait_for(pilot, lambda: any(b.reference == ref for b in app.screen.basket), f"bill {ref} in the basket")
    await pilot.press("f5")


async def test_terminal_payment_receipt_shows_masked_card(
    ui_app: Any, tpe_config: Any, seeded_references: list[str]
) -> None:
    app = ui_app(tpe_config, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        [p] = app.backend.journal.list(bill_reference=ref)
        receipt = text_of(pilot, "#receipt")
        assert p.state == "approved" and p.method == "card_terminal"
        assert p.card["pan_masked"] in receipt and "******" in p.card["pan_masked"]
        assert p.receipt_number in receipt


async def test_declined_card_says_so_and_keeps_the_basket(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("refuse")
    app = ui_app(tpe_config, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: "declined" in app.screen.message_kind + app.screen.message.lower()
                       or "refus" in app.screen.message.lower(), "the decline message")
        assert screen_name(pilot) == "PaymentScreen"
        assert [b.reference for b in app.screen.basket] == [ref]  # the cashier can try another card
        [p] = app.backend.journal.list(bill_reference=ref)
        assert p.state == "declined"


async def test_cancelled_wait_charges_nothing(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("silent")  # the terminal does not answer: the cashier gives up
    cfg = tpe_config.model_copy(deep=True)
    cfg.tpe.ack_timeout = 30
    app = ui_app(cfg, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "WaitScreen", "the wait panel")
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the end of the wait")
        assert app.screen.message_kind == "warning"
        [p] = app.backend.journal.list(bill_reference=ref)
        assert p.state == "cancelled"


async def test_quitting_is_refused_while_a_payment_waits_for_its_outcome(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("silent")  # the terminal takes its time: the payment is in flight
    cfg = tpe_config.model_copy(deep=True)
    cfg.tpe.ack_timeout = 30
    app = ui_app(cfg, run_sync=False)
    ref = seeded_references[0]
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "WaitScreen", "the wait panel")
        await wait_for(pilot, lambda: app.backend.payments_in_flight == 1, "the payment in flight")
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and screen_name(pilot) == "WaitScreen"  # still there, the payment too
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "the end of the wait")
        assert app.backend.payments_in_flight == 0
        [p] = app.backend.journal.list(bill_reference=ref)
        assert p.state == "cancelled"  # the outcome was written: nothing left in doubt


async def test_unknown_outcome_is_settled_after_a_restart(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("no_answer")  # the amount reached the terminal, no answer came back
    ref = seeded_references[0]
    app = ui_app(tpe_config, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen", "the unknown outcomes screen")
        # A second payment of the same bill is refused while the outcome is unknown.
    [p] = app.backend.journal.list(bill_reference=ref)
    assert p.state == "unknown"
    app.backend.close()

    app2 = ui_app(tpe_config, run_sync=False)  # the counter restarts
    async with app2.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen", "unknown outcomes shown at login")
        await wait_for(pilot, lambda: app2.screen.rows, "the unknown payment listed")
        assert app2.screen.rows[0].payment_id == p.payment_id
        await type_into(pilot, "#card-scheme", "visa", enter=False)  # what the ticket shows of the card
        await type_into(pilot, "#card-last4", "1234", enter=False)
        await type_into(pilot, "#auth-code", "A1B2C3")  # Enter settles as approved
        await wait_for(pilot, lambda: not app2.screen.rows and app2.screen.message, "the settle")
        settled = app2.backend.journal.get(p.payment_id)
        assert settled.state == "approved" and settled.authorization["code"] == "A1B2C3"
        assert settled.card == {"scheme": "VISA", "pan_masked": "************1234", "pan_token": None}
        assert settled.settlement is not None and settled.settlement["by"] == "c0042"
        trail = app2.backend.journal.audit(p.payment_id)
        assert trail[-1]["to_state"] == "approved" and trail[-1]["actor"] == "c0042"


async def test_pay_blocked_while_bill_has_unknown_outcome(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("no_answer")
    ref = seeded_references[0]
    app = ui_app(tpe_config, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen", "the unknown outcomes screen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to payment")
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket or app.screen.message_kind == "error", "the lookup")
        if app.screen.basket:
            await pilot.press("f5")
            await wait_for(pilot, lambda: app.screen.message_kind == "error", "the refusal")
        assert len(app.backend.journal.list(bill_reference=ref)) == 1  # no second charge started
        # The ticket shows the terminal declined: settle it, then the bill can be paid again.
        await pilot.press("f6")
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen" and app.screen.rows, "the unknown list")
        app.screen.query_one("#settle-declined").press()  # declined is final: asked once more, pressed again
        await wait_for(pilot, lambda: app.screen.decline_armed, "the question")
        app.screen.query_one("#settle-declined").press()
        await wait_for(pilot, lambda: not app.screen.rows and app.screen.message, "the settle")
        assert app.backend.journal.list(bill_reference=ref)[0].state == "declined"
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to payment")
        await pilot.press("escape")
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the second payment's receipt")
        assert app.backend.journal.list(bill_reference=ref)[0].state == "approved"


async def test_lockout_after_repeated_wrong_pins(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await wait_for(pilot, lambda: pilot.app.screen.query("#cashier-id"), "the login form")
        await type_into(pilot, "#cashier-id", "c0042")
        for attempt in range(5):
            await type_into(pilot, "#pin", "0000")
            await wait_for(pilot, lambda: not app.screen.busy, f"attempt {attempt + 1}")
        assert "lock" in app.screen.error.lower() or "bloqu" in app.screen.error.lower()
        await type_into(pilot, "#pin", "4826")  # the right PIN is refused while locked
        await wait_for(pilot, lambda: not app.screen.busy, "the locked attempt")
        assert screen_name(pilot) == "LoginScreen"
        assert "bloqu" in app.screen.error.lower()
    assert app.backend.cashiers.get("c0042").locked_until is not None


async def test_offline_payment_then_upload_when_the_link_returns(
    ui_app: Any, tpe_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    ref = seeded_references[0]
    app = ui_app(tpe_config, status_interval=0.1)
    async with app.run_test(size=(160, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", ref)  # online: the bill is cached
        await wait_for(pilot, lambda: app.screen.basket, "the online lookup")
        await pilot.press("escape")
        billing_server.stop()  # the agency's link goes down
        await type_into(pilot, "#reference", ref)
        await wait_for(pilot, lambda: app.screen.basket, "the lookup from the cache")
        assert app.screen.basket[0].offline
        assert "cache" in text_of(pilot, "#bill").lower()
        await pilot.press("f5")
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        await pilot.press("enter")
        [p] = app.backend.journal.list(bill_reference=ref)
        assert p.captured_offline and p.state == "approved"
        await wait_for(pilot, lambda: "Non transmis : 1" in text_of(pilot, "#sb-queue"), "1 unsent in the bar")
        await wait_for(pilot, lambda: "Hors ligne" in text_of(pilot, "#sb-link"), "offline in the bar")

        billing_server.start()  # the link comes back
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: "Non transmis : 0" in text_of(pilot, "#sb-queue"), "the queue drained")
        await wait_for(pilot, lambda: "En ligne" in text_of(pilot, "#sb-link"), "online in the bar")
    assert app.backend.journal.get(p.payment_id).state == "uploaded"
    assert any(r["payment_id"] == p.payment_id for r in billing_server.recorded_payments())


async def test_unsent_payments_turn_red_past_the_warning_age(
    ui_app: Any, ui_config: Any, seeded_references: list[str]
) -> None:
    cfg = ui_config.model_copy(deep=True)
    cfg.offline.warn_after = 1  # seconds
    app = ui_app(cfg, run_sync=False, status_interval=0.1)  # nothing uploads: the payment stays unsent
    async with app.run_test(size=(160, 44)) as pilot:
        await login(pilot)
        queue = app.screen.query_one("#sb-queue")
        assert not queue.has_class("-late")
        await pay_one(pilot, seeded_references[0])
        await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt")
        await pilot.press("enter")
        queue = app.screen.query_one("#sb-queue")
        await wait_for(pilot, lambda: "Non transmis : 1" in text_of(pilot, "#sb-queue"), "1 unsent")
        await wait_for(pilot, lambda: queue.has_class("-late"), "the late warning")
        assert "le plus ancien" in text_of(pilot, "#sb-queue")

"""The supervisor's accounts screen (F12) through Pilot, on the real cashiers.db: who may open it, and
every change (add, unlock, new PIN, disable, enable) stored and recorded under the supervisor's id."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import Button, Checkbox, DataTable

from agent.cashiers import LockedOut, LoginFailed
from tests.ui.conftest import CASHIER, SUPERVISOR, login, screen_name, text_of, type_into, wait_for

pytestmark = pytest.mark.anyio


def rows(pilot: Any) -> dict[str, list[str]]:
    table = pilot.app.screen.query_one("#cashiers-table", DataTable)
    return {str(r[0]): [str(c) for c in r] for r in (table.get_row_at(i) for i in range(table.row_count))}


async def select(pilot: Any, cashier_id: str) -> None:
    screen = pilot.app.screen
    table = screen.query_one("#cashiers-table", DataTable)
    table.move_cursor(row=[c.cashier_id for c in screen.rows].index(cashier_id))
    await wait_for(pilot, lambda: screen.selected_id == cashier_id, f"{cashier_id} selected")


async def press(pilot: Any, button: str, then: str) -> None:
    """Press a button and wait for the worker's answer to show (the message line)."""
    screen = pilot.app.screen
    screen.query_one(button, Button).press()
    await wait_for(pilot, lambda: not screen.busy and then in text_of(pilot, "#cashiers-message"),
                   f"{then!r} after {button}")


async def test_a_cashier_needs_a_supervisor_pin_and_the_new_account_is_recorded_under_it(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    store = app.backend.cashiers
    async with app.run_test(size=(150, 44)) as pilot:
        await login(pilot, CASHIER)
        await pilot.press("f12")
        await wait_for(pilot, lambda: screen_name(pilot) == "SupervisorScreen", "the supervisor prompt")
        await type_into(pilot, "#sup-id", CASHIER[0])  # a cashier's own PIN is not enough
        await type_into(pilot, "#sup-pin", CASHIER[1])
        await wait_for(pilot, lambda: "superviseur" in text_of(pilot, "#sup-error").lower(), "a cashier refused")
        await type_into(pilot, "#sup-id", SUPERVISOR[0])
        await type_into(pilot, "#sup-pin", SUPERVISOR[1])
        await wait_for(pilot, lambda: screen_name(pilot) == "CashiersScreen" and app.screen.rows, "the accounts")
        assert set(rows(pilot)) == {"c0042", "s0001"}
        assert "actif" in rows(pilot)["c0042"] and "Superviseur" in rows(pilot)["s0001"]

        await type_into(pilot, "#c-id", "c0100", enter=False)
        await type_into(pilot, "#c-name", "Nadia K.", enter=False)
        await type_into(pilot, "#c-pin", "2468", enter=False)
        await type_into(pilot, "#c-pin2", "2469", enter=False)
        app.screen.query_one("#c-add", Button).press()
        await wait_for(pilot, lambda: "diffèrent" in text_of(pilot, "#cashiers-message"), "mismatched PINs refused")
        await type_into(pilot, "#c-pin", "246", enter=False)
        await type_into(pilot, "#c-pin2", "246", enter=False)
        await press(pilot, "#c-add", "pin: must be 4 to 8 digits")
        assert [c.cashier_id for c in store.list()] == ["c0042", "s0001"]  # nothing stored

        await type_into(pilot, "#c-pin", "2468", enter=False)
        await type_into(pilot, "#c-pin2", "2468")  # Enter on the confirmation adds too
        await wait_for(pilot, lambda: "c0100" in rows(pilot), "the new account in the table")
        assert "Compte c0100 créé" in text_of(pilot, "#cashiers-message")
        assert app.screen.query_one("#c-pin").value == ""  # PIN fields cleared
        await wait_for(pilot, lambda: "compte créé · par s0001" in text_of(pilot, "#cashier-events"), "the event")
    assert store.verify("c0100", "2468").role == "cashier"
    [created] = [e for e in store.events("c0100") if e["kind"] == "created"]
    assert created["actor"] == SUPERVISOR[0]


async def test_a_supervisor_unlocks_resets_a_pin_disables_and_enables_an_account(ui_app: Any) -> None:
    app = ui_app(run_sync=False)
    store = app.backend.cashiers
    for _ in range(store.max_attempts):  # c0042 forgot the PIN
        with pytest.raises((LoginFailed, LockedOut)):
            store.verify("c0042", "0000")
    async with app.run_test(size=(150, 44)) as pilot:
        await login(pilot, SUPERVISOR)
        await pilot.press("f12")  # a supervisor is not asked again
        await wait_for(pilot, lambda: screen_name(pilot) == "CashiersScreen" and app.screen.rows, "the accounts")
        assert any("bloqué jusqu'à" in c for c in rows(pilot)["c0042"])
        await select(pilot, "c0042")

        await press(pilot, "#c-unlock", "Compte c0042 débloqué")
        await wait_for(pilot, lambda: "actif" in rows(pilot)["c0042"], "c0042 active again")
        await wait_for(pilot, lambda: "débloqué · par s0001" in text_of(pilot, "#cashier-events"), "the event")

        await type_into(pilot, "#c-pin", "13572468", enter=False)
        await type_into(pilot, "#c-pin2", "13572468", enter=False)
        await press(pilot, "#c-reset", "Nouveau code PIN enregistré pour c0042")
        with pytest.raises(LoginFailed):
            store.verify("c0042", CASHIER[1])
        assert store.verify("c0042", "13572468")

        await press(pilot, "#c-disable", "Appuyez encore pour désactiver c0042")  # a second press confirms
        assert store.get("c0042").active
        await press(pilot, "#c-disable", "Compte c0042 désactivé")
        await wait_for(pilot, lambda: "désactivé" in rows(pilot)["c0042"], "c0042 disabled in the table")
        with pytest.raises(LoginFailed):
            store.verify("c0042", "13572468")
        assert str(app.screen.query_one("#c-disable", Button).label) == "Réactiver"
        await press(pilot, "#c-disable", "Compte c0042 réactivé")
        assert store.verify("c0042", "13572468")

        await select(pilot, "s0001")  # the only supervisor cannot be disabled
        await press(pilot, "#c-disable", "Appuyez encore")
        await press(pilot, "#c-disable", "last active supervisor")
        assert store.get("s0001").active

        await type_into(pilot, "#c-id", "s0002", enter=False)
        await type_into(pilot, "#c-name", "Walid H.", enter=False)
        app.screen.query_one("#c-supervisor", Checkbox).value = True
        await type_into(pilot, "#c-pin", "97531", enter=False)
        await type_into(pilot, "#c-pin2", "97531", enter=False)
        await press(pilot, "#c-add", "Compte s0002 créé")
        await pilot.press("escape")
        await wait_for(pilot, lambda: screen_name(pilot) == "PaymentScreen", "back to the payment screen")
    assert store.get("s0002").is_supervisor
    kinds = [(e["kind"], e["actor"]) for e in store.events("c0042") if e["actor"] == SUPERVISOR[0]]
    assert kinds == [("unlocked", "s0001"), ("pin_changed", "s0001"), ("disabled", "s0001"), ("enabled", "s0001")]

"""F6, unknown outcomes: settling from the TPE's ticket asks for what the ticket shows of the card, in the
cashier's language, by the core's own rules; a full card number typed by mistake is cleared the moment it is
recognised and never kept; declined takes a second press; a double press settles once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Button, Checkbox, Input

from config.schema import SchemeRule
from sandbox.tpe import TEST_CARDS, TEST_PANS
from tests.ui.conftest import login, screen_name, type_into, wait_for
from tests.ui.test_flow import pay_one

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def unknown_screen(ui_app: Any, tpe_config: Any, tpe_sim: Any, ref: str) -> AsyncIterator[tuple[Any, Any]]:
    """F6 with one card payment whose outcome is unknown (the amount reached the terminal, no answer came)."""
    tpe_sim.script("no_answer")
    cfg = tpe_config.model_copy(deep=True)
    cfg.cards.schemes = [SchemeRule(name="EDAHABIA", bins=["628058"]), SchemeRule(name="CIB", bins=["603620"])]
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, ref)
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen" and app.screen.rows, "the unknown list")
        yield pilot, app.screen


def _stored(cfg: Any) -> bytes:
    return b"".join(f.read_bytes() for f in Path(cfg.state.dir).rglob("*") if f.is_file())


async def test_settling_from_the_ticket_asks_for_the_card_and_refuses_a_full_card_number(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    pan = TEST_CARDS[tpe_sim.card]
    async with unknown_screen(ui_app, tpe_config, tpe_sim, seeded_references[0]) as (pilot, screen):
        app = pilot.app
        [p] = screen.rows

        await type_into(pilot, "#auth-code", "A1B2C3")  # the code alone: the card's digits are asked for
        await wait_for(pilot, lambda: "4 derniers chiffres" in screen.message, "the request for the last 4 digits")

        await type_into(pilot, "#card-last4", pan, enter=False)  # the whole number, by mistake
        await wait_for(pilot, lambda: "numéro de carte complet" in screen.message, "the full-number notice")
        assert screen.query_one("#card-last4", Input).value == ""  # cleared at once, before any press
        assert app.backend.journal.get(p.payment_id).state == "unknown"

        await type_into(pilot, "#card-last4", pan[-4:], enter=False)
        await type_into(pilot, "#auth-code", "A1B2C3")
        await wait_for(pilot, lambda: "réseau de la carte" in screen.message, "the request for the scheme")

        await type_into(pilot, "#card-scheme", "edahabia", enter=False)
        await type_into(pilot, "#auth-code", "A1B2C3")
        await wait_for(pilot, lambda: not screen.rows and screen.message, "the settle")
        settled = app.backend.journal.get(p.payment_id)
        assert settled.state == "approved"
        assert settled.card == {"scheme": "EDAHABIA", "pan_masked": "*" * 12 + pan[-4:], "pan_token": None}
        assert settled.settlement is not None and settled.settlement["by"] == "c0042"
        assert settled.to_api()["settlement"]["from"] == "terminal_ticket"
        assert all(x.encode() not in _stored(tpe_config) for x in TEST_PANS)


@pytest.mark.parametrize("typed", ["spaced", "eleven_digits"])
async def test_a_card_number_is_cleared_as_it_is_typed_and_on_every_outcome(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str], typed: str
) -> None:
    pan = TEST_CARDS[tpe_sim.card]
    text = " ".join(pan[i : i + 4] for i in range(0, len(pan), 4)) if typed == "spaced" else pan[:11]
    async with unknown_screen(ui_app, tpe_config, tpe_sim, seeded_references[0]) as (pilot, screen):
        scheme = screen.query_one("#card-scheme", Input)
        await type_into(pilot, "#card-scheme", text, enter=False)  # in the wrong field: cleared all the same
        await wait_for(pilot, lambda: scheme.value == "", "the number cleared from the scheme field")
        field = screen.query_one("#card-last4", Input)
        await type_into(pilot, "#card-last4", text, enter=False)
        await wait_for(pilot, lambda: field.value == "", "the number cleared as typed")
        assert "numéro de carte complet" in screen.message

        # Four digits typed, then Declined (its first press only asks) or Ask the server: not left behind.
        for button in ("#settle-declined", "#settle-online"):
            await type_into(pilot, "#card-last4", pan[-4:], enter=False)
            screen.query_one(button, Button).press()
            await wait_for(pilot, lambda: field.value == "", f"the digits cleared by {button}")
            await wait_for(pilot, lambda: not screen.busy, "the answer")
        [p] = screen.rows
        assert pilot.app.backend.journal.get(p.payment_id).state == "unknown"


async def test_declined_takes_a_second_press(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    async with unknown_screen(ui_app, tpe_config, tpe_sim, seeded_references[0]) as (pilot, screen):
        [p] = screen.rows
        declined = screen.query_one("#settle-declined", Button)
        declined.press()
        await wait_for(pilot, lambda: "PAS été débité" in screen.message, "the question")
        await pilot.pause()
        assert pilot.app.backend.journal.get(p.payment_id).state == "unknown"  # one press: nothing written
        screen.query_one("#settle-online", Button).press()  # another button disarms it
        await wait_for(pilot, lambda: not screen.busy and "PAS été débité" not in screen.message, "the answer")
        declined.press()
        await wait_for(pilot, lambda: "PAS été débité" in screen.message, "the question again")
        declined.press()
        await wait_for(pilot, lambda: not screen.rows, "the settle")
        assert pilot.app.backend.journal.get(p.payment_id).state == "declined"


async def test_a_refusal_is_said_in_the_cashiers_language_and_a_double_press_settles_once(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    pan = TEST_CARDS[tpe_sim.card]
    async with unknown_screen(ui_app, tpe_config, tpe_sim, seeded_references[0]) as (pilot, screen):
        [p] = screen.rows
        # The BIN shown names EDAHABIA: CIB typed is refused by the core's rule, said in French.
        await type_into(pilot, "#card-last4", f"{pan[:6]}******{pan[-4:]}", enter=False)
        await type_into(pilot, "#card-scheme", "CIB", enter=False)
        await type_into(pilot, "#auth-code", "A1B2C3")
        await wait_for(pilot, lambda: "ne correspond pas" in screen.message, "the scheme refusal")
        assert "does not match" not in screen.message

        await type_into(pilot, "#card-scheme", "EDAHABIA", enter=False)
        approved = screen.query_one("#settle-approved", Button)
        approved.press()
        approved.press()  # impatient: the second press must not settle again, nor answer anything
        await pilot.pause()
        assert "Impossible" not in screen.message and "Erreur" not in screen.message, screen.message
        await wait_for(pilot, lambda: "Plus aucun paiement incertain" in screen.message, "the settle and the list")
        for _ in range(10):  # a second settle's answer would come after the first's
            await pilot.pause(0.05)
        assert screen.message.startswith("Régularisé") and "Erreur" not in screen.message, screen.message
        assert pilot.app.backend.journal.get(p.payment_id).state == "approved"
        assert [e["to_state"] for e in pilot.app.backend.journal.audit(p.payment_id)].count("approved") == 1


async def test_a_ticket_without_card_digits_is_settled_when_the_cashier_ticks_it(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    async with unknown_screen(ui_app, tpe_config, tpe_sim, seeded_references[0]) as (pilot, screen):
        [p] = screen.rows
        await type_into(pilot, "#card-scheme", "EDAHABIA", enter=False)
        await type_into(pilot, "#auth-code", "A1B2C3")  # no digits, nothing said: they are asked for
        await wait_for(pilot, lambda: "4 derniers chiffres" in screen.message, "the request for the last 4 digits")
        screen.query_one("#no-card-digits", Checkbox).value = True  # the ticket prints none: said explicitly
        await type_into(pilot, "#auth-code", "A1B2C3")
        await wait_for(pilot, lambda: not screen.rows, "the settle")
        settled = pilot.app.backend.journal.get(p.payment_id)
        assert settled.state == "approved"
        assert settled.card == {"scheme": "EDAHABIA", "pan_masked": None, "pan_token": None}
        assert screen.query_one("#no-card-digits", Checkbox).value is False  # not carried to the next one

"""F6, unknown outcomes: settling from the TPE's ticket asks for what the ticket shows of the card, in the
cashier's language, and a full card number typed by mistake is refused, cleared and never kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.schema import SchemeRule
from sandbox.tpe.sim import TEST_CARDS, TEST_PANS
from tests.ui.conftest import login, screen_name, type_into, wait_for
from tests.ui.test_flow import pay_one

pytestmark = pytest.mark.anyio


async def test_settling_from_the_ticket_asks_for_the_card_and_refuses_a_full_card_number(
    ui_app: Any, tpe_config: Any, tpe_sim: Any, seeded_references: list[str]
) -> None:
    tpe_sim.script("no_answer")  # the amount reached the terminal, no answer came back
    pan = TEST_CARDS[tpe_sim.card]
    cfg = tpe_config.model_copy(deep=True)
    cfg.cards.schemes = [SchemeRule(name="EDAHABIA", bins=["628058"]), SchemeRule(name="CIB", bins=["603620"])]
    app = ui_app(cfg, run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await pay_one(pilot, seeded_references[0])
        await wait_for(pilot, lambda: screen_name(pilot) == "UnknownScreen" and app.screen.rows, "the unknown list")
        screen = app.screen
        [p] = screen.rows

        await type_into(pilot, "#auth-code", "A1B2C3")  # the code alone: the card's digits are asked for
        await wait_for(pilot, lambda: "4 derniers chiffres" in screen.message, "the request for the last 4 digits")

        await type_into(pilot, "#card-last4", pan, enter=False)  # the whole number, by mistake
        await type_into(pilot, "#auth-code", "A1B2C3")
        await wait_for(pilot, lambda: "numéro de carte complet" in screen.message, "the full-number refusal")
        assert screen.query_one("#card-last4").value == ""  # not left on the screen
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
        state = Path(tpe_config.state.dir)
        stored = b"".join(f.read_bytes() for f in state.rglob("*") if f.is_file())
        assert all(x.encode() not in stored for x in TEST_PANS)

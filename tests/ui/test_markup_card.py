"""A card's own text is shown as it is: the application labels a virtual card (vpcd, real pcscd) offers for the
customer's choice hold "[/]", "[@click=app.quit]x" and an ESC; the wait panel lists them literally, the counter
goes on, and Esc cancels as usual."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.widgets import OptionList

from sandbox.cards.profiles import PROFILES
from tests.cards.conftest import insert, vpcd_reader  # noqa: F401 - the card fixtures, imported
from tests.cards.test_emv_ui import _pay, reader_ui_config  # noqa: F401
from tests.ui.conftest import login, screen_name, wait_for

pytestmark = pytest.mark.anyio

LABELS = ("[/]CIB \x1b[31m", "[@click=app.quit]x")  # 16 bytes at most, as an EMV label (50)


def _hostile_card() -> Any:
    confirm = PROFILES["confirm"]  # two applications, one asks for the cardholder's confirmation
    visa, cib = confirm.apps
    apps = [dataclasses.replace(visa, label=LABELS[1]), dataclasses.replace(cib, label=LABELS[0])]
    return dataclasses.replace(confirm, name="hostile-labels", apps=apps)


async def test_the_cards_application_labels_are_shown_literally(
    ui_app: Any, reader_ui_config: Any, insert: Any, seeded_references: list[str]  # noqa: F811
) -> None:
    app = ui_app(reader_ui_config, run_sync=False)
    with insert(_hostile_card()):
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)
            await _pay(pilot, seeded_references[2])
            await wait_for(pilot, lambda: screen_name(pilot) == "WaitScreen"
                           and app.screen.query_one("#app-choice", OptionList).display, "the choice", rounds=1500)
            choice = app.screen.query_one("#app-choice", OptionList)
            shown = [str(choice.get_option_at_index(i).prompt) for i in range(choice.option_count)]
            assert shown == ["[/]CIB \\x1b[31m", "[@click=app.quit]x"], shown  # priority order, ESC written out
            assert app.is_running
            await pilot.press("escape")
            await wait_for(pilot, lambda: screen_name(pilot) != "WaitScreen", "the payment cancelled", rounds=1500)
            assert app.is_running

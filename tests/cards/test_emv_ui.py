"""The cashier's screen during an EMV payment on the reader (Pilot, real pcscd + vpcd, sandbox acquirer): the
stage in words while the card works, and a decline in words from its response code, in fr/ar/en."""

from __future__ import annotations

from typing import Any

import pytest

from config.schema import PaymentsConfig
from sandbox.cards.profiles import sandbox_cards_config, sandbox_emv_config
from tests.core.conftest import with_changes
from tests.ui.conftest import anyio_backend, login, screen_name, ui_app, ui_backend, ui_config, wait_for  # noqa: F401
from ui import i18n
from ui.screens.wait import decline_text, stage_label


@pytest.fixture
def reader_ui_config(ui_config, vpcd_reader):  # noqa: F811 - the tests.ui fixtures, imported
    cfg = with_changes(ui_config, cards=sandbox_cards_config(reader=vpcd_reader, read_timeout=15),
                       emv=sandbox_emv_config())
    cfg.payments = PaymentsConfig(default_method="card_reader", methods=["card_reader", "cash"])
    return cfg


async def _pay(pilot: Any, ref: str) -> None:
    from tests.ui.conftest import type_into

    app = pilot.app
    await type_into(pilot, "#reference", ref)
    await wait_for(pilot, lambda: any(b.reference == ref for b in app.screen.basket), f"bill {ref} in the basket")
    await pilot.press("f5")


@pytest.mark.anyio
async def test_the_wait_panel_says_the_stage_and_an_approval_prints(ui_app, reader_ui_config, insert,  # noqa: F811
                                                                    seeded_references):
    from ui.messages import PayStatus

    app = ui_app(reader_ui_config, run_sync=False)
    seen: list[str] = []
    with insert("cib"):
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)
            original = PayStatus.__init__

            def spy(self: Any, key: str, *a: Any, **kw: Any) -> None:
                seen.append(key)
                original(self, key, *a, **kw)

            PayStatus.__init__ = spy  # type: ignore[method-assign]
            try:
                await _pay(pilot, seeded_references[0])
                await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt", rounds=1500)
            finally:
                PayStatus.__init__ = original  # type: ignore[method-assign]
    [p] = app.backend.journal.list(bill_reference=seeded_references[0])
    assert p.state == "approved" and p.method == "card_reader"
    assert "do_not_remove" in seen and "remove_card" in seen


@pytest.mark.anyio
async def test_a_decline_after_approval_is_said_in_words(ui_app, reader_ui_config, insert,  # noqa: F811
                                                         seeded_references):
    app = ui_app(reader_ui_config, run_sync=False)
    with insert("emv_aac_second"):
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)
            await _pay(pilot, seeded_references[1])
            await wait_for(pilot, lambda: "annulée" in app.screen.message, "the decline in words", rounds=1500)
            assert screen_name(pilot) == "PaymentScreen"
    [p] = app.backend.journal.list(bill_reference=seeded_references[1])
    assert p.state == "declined"


@pytest.mark.parametrize(("lang", "stage", "words"), [
    ("fr", "enter_pin", "Saisissez votre code sur le lecteur"), ("fr", "do_not_remove", "Ne retirez pas la carte"),
    ("fr", "remove_card", "Retirez la carte"), ("en", "do_not_remove", "Do not remove the card"),
    ("ar", "do_not_remove", "لا تسحب البطاقة"),
])
def test_stages_in_three_languages(lang, stage, words):
    before = i18n.language()
    i18n.set_language(lang)
    try:
        assert stage_label(stage) == words
    finally:
        i18n.set_language(before)


@pytest.mark.parametrize(("lang", "detail", "words"), [
    ("fr", {"response_code": "51"}, "provision insuffisante (51)"),
    ("en", {"response_code": "Z3"}, "the bank could not be reached and the card does not allow an offline payment"),
    ("ar", {"response_code": "54"}, "انتهت صلاحية البطاقة (54)"),
    ("fr", {"response_code": "00", "reversal": "card_removed"}, "l'autorisation a été annulée"),
    ("en", {"response_code": "00", "pin": "PIN blocked: no tries left"}, "the card's PIN is blocked"),
    ("en", {"response_code": "XY"}, "declined by the bank (code XY)"),
])
def test_declines_in_words(lang, detail, words):
    before = i18n.language()
    i18n.set_language(lang)
    try:
        assert words in decline_text(detail, "declined by the bank (code XY)")
    finally:
        i18n.set_language(before)


@pytest.mark.anyio
async def test_the_customer_chooses_an_application_that_asks_for_confirmation(ui_app, reader_ui_config,  # noqa: F811
                                                                             insert, seeded_references):
    from textual.widgets import OptionList

    app = ui_app(reader_ui_config, run_sync=False)
    with insert("confirm"):
        async with app.run_test(size=(140, 44)) as pilot:
            await login(pilot)
            await _pay(pilot, seeded_references[2])
            await wait_for(pilot, lambda: screen_name(pilot) == "WaitScreen"
                           and app.screen.query_one("#app-choice", OptionList).display, "the choice", rounds=1500)
            choice = app.screen.query_one("#app-choice", OptionList)
            assert choice.option_count == 2  # CIB TEST (asks for confirmation, priority 1), then VISA
            await pilot.press("enter")  # the first: CIB TEST
            await wait_for(pilot, lambda: screen_name(pilot) == "ReceiptScreen", "the receipt", rounds=1500)
    [p] = app.backend.journal.list(bill_reference=seeded_references[2])
    assert p.state == "approved" and p.card["scheme"] == "CIB"

"""Amounts, counts and times as the cashier's locale writes them (ui/formatting.py, CLDR through Babel).

The CLI keeps config.money.format_amount ("11273.00"): scripts read it; only the screens and receipts change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from babel.numbers import get_currency_precision

from config.money import CURRENCIES, MoneyError, format_amount
from tests.ui.conftest import login, text_of, type_into, wait_for
from ui import i18n
from ui.formatting import date_text, locale_for, money, number, time_text
from ui.text import local_when

NNBSP, NBSP, RLM = "\u202f", "\u00a0", "\u200f"


@pytest.mark.parametrize(
    ("minor", "code", "language", "shown"),
    [
        (1127300, "DZD", "fr", f"11{NNBSP}273,00{NBSP}DA"),  # fr_DZ
        (1127350, "TND", "fr", f"1{NNBSP}127,350{NBSP}DT"),  # fr_TN: millimes, 3 decimals
        (-550, "DZD", "fr", f"-5,50{NBSP}DA"),
        (0, "TND", "fr", f"0,000{NBSP}DT"),
        (123456789012345, "DZD", "fr", f"1{NNBSP}234{NNBSP}567{NNBSP}890{NNBSP}123,45{NBSP}DA"),  # no float
        (1127300, "DZD", "ar", f"{RLM}11.273,00{NBSP}د.ج.{RLM}"),  # ar_DZ, logical order
        (1127350, "TND", "ar", f"{RLM}1.127,350{NBSP}د.ت.{RLM}"),  # ar_TN
        (-550, "TND", "ar", f"{RLM}-0,550{NBSP}د.ت.{RLM}"),
        (1127300, "DZD", "en", f"DZD{NBSP}11,273.00"),  # CLDR's spacing next to a letter symbol
        (1127350, "TND", "en", f"TND{NBSP}1,127.350"),
        (-550, "DZD", "en", f"-DZD{NBSP}5.50"),
        (0, "DZD", "en", f"DZD{NBSP}0.00"),
    ],
)
def test_money_in_the_locale_of_the_language_and_the_currency(minor: int, code: str, language: str, shown: str) -> None:
    assert money(minor, code, language) == shown


def test_the_locale_follows_the_currency_and_falls_back_to_the_language() -> None:
    assert locale_for("fr", "DZD") == "fr_DZ" and locale_for("ar", "TND") == "ar_TN"
    assert locale_for("en", "DZD") == "en"  # CLDR has no en_DZ
    assert locale_for("fr", "EUR") == "fr" and locale_for("fr") == "fr"


def test_cldr_digits_are_the_currency_exponents() -> None:
    """format_currency shows CLDR's digits: equal to ours, an amount is never rounded on screen."""
    for code, cur in CURRENCIES.items():
        assert get_currency_precision(code) == cur.exponent, code


def test_money_refuses_what_is_not_minor_units() -> None:
    with pytest.raises(MoneyError):
        money(12.5, "DZD", "fr")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        money(100, "XYZ", "fr")


def test_the_cli_format_is_unchanged() -> None:
    assert format_amount(1127300, "DZD") == "11273.00" and format_amount(-12345, "TND") == "-12.345"


def test_counts_dates_and_times() -> None:
    assert number(2000, "DZD", "fr") == f"2{NNBSP}000" and number(2000, "DZD", "ar") == "2.000"
    assert number(2000, None, "en") == "2,000"
    dt = datetime(2026, 11, 22, 21, 4, 3, tzinfo=UTC)
    local = dt.astimezone()
    assert time_text(dt, language="fr") == f"{local:%H:%M}"  # 24-hour, local time
    assert time_text(dt, seconds=True, language="ar") == f"{local:%H:%M:%S}"
    assert date_text(dt, language="fr") == f"{local:%d/%m/%Y}"
    assert date_text(dt, language="en") == f"{local:%m/%d/%Y}"
    try:
        i18n.set_language("fr", bidi="app")
        # Stored times, UTC (cashiers) or with their offset (journal), shown in local time.
        assert local_when("2026-11-22T21:04:03+00:00") == f"{local:%d/%m/%Y %H:%M}"
        assert local_when(dt.astimezone().isoformat(), seconds=True) == f"{local:%d/%m/%Y %H:%M:%S}"
        assert local_when(None) == "-"
    finally:
        i18n.set_language("fr", bidi="app")


def test_arabic_amounts_reach_the_screen_in_visual_order_without_bidi_marks() -> None:
    try:
        i18n.set_language("ar", bidi="app")
        shown = i18n.t("Total: {total} ({n} bills)", total=money(345600, "DZD"), n=1)
        assert "3.456,00" in shown and RLM not in shown
        i18n.set_language("ar", bidi="terminal")  # the terminal does bidi: the marks steer it
        assert i18n.shape(money(345600, "DZD")) == money(345600, "DZD")
    finally:
        i18n.set_language("fr", bidi="app")


@pytest.mark.anyio
async def test_the_payment_screen_shows_the_amount_due_as_a_french_counter_writes_it(
    ui_app: Any, seeded_references: list[str]
) -> None:
    from textual.widgets import DataTable

    app = ui_app(run_sync=False)
    async with app.run_test(size=(140, 44)) as pilot:
        await login(pilot)
        await type_into(pilot, "#reference", seeded_references[0])
        bill = await wait_for(pilot, lambda: app.screen.basket and app.screen.basket[0], "the bill in the basket")
        due = money(bill.amount_due, bill.currency, "fr")
        assert due.endswith(f"{NBSP}DA") and "," in due
        assert f"Montant dû: {due}" in text_of(pilot, "#bill")
        assert due in text_of(pilot, "#total")
        table = app.screen.query_one("#basket", DataTable)
        assert due in [str(cell) for cell in table.get_row_at(0)]
        # The amount field stays the plain decimal a cashier edits and parse_amount reads.
        assert app.screen.query_one("#amount").value == format_amount(bill.amount_due, bill.currency)

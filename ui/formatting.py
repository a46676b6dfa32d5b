"""Money, numbers, dates and times as the cashier's locale writes them (CLDR data, through Babel).

    from ui.formatting import money, number, date_text, time_text
    money(1127300, "DZD", "fr")   # '11\u202f273,00\xa0DA'   (fr_DZ: narrow no-break space, comma, DA)
    money(1127350, "TND", "ar")   # '\u200f11.273,350\xa0د.ت.\u200f'   (ar_TN, logical order: shape() it)
    money(1127300, "DZD", "en")   # 'DZD\xa011,273.00'
    date_text(dt)                 # '22/11/2026' in fr, the current UI language by default
    time_text(dt)                 # '09:14' (24-hour in every language: a counter's clock)

The locale is the UI language with the territory of the currency (DZD: Algeria, TND: Tunisia), so a French
counter in Oran shows "11 273,00 DA" and one in Sfax "11 273,500 DT"; a pair CLDR does not know (en_DZ)
falls back to the language. Amounts stay integers in minor units until here, then an exact Decimal.

These are for people reading the screen or a receipt. The CLI and the files scripts read keep
config.money.format_amount ("11273.00"), and the amount field a cashier edits too (parse_amount reads it).
Texts are in logical order: embed them in i18n.t(...) or pass them through i18n.shape() for the screen.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from decimal import Decimal
from functools import cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_skeleton
from babel.numbers import format_currency, format_decimal, get_currency_symbol

from agent import clock
from config.money import MoneyError, currency
from ui import i18n

TERRITORIES = {"DZD": "DZ", "TND": "TN"}


def locale_for(language: str, currency_code: str | None = None) -> str:
    """The CLDR locale for a UI language and a currency: ("fr", "DZD") -> "fr_DZ", ("en", "DZD") -> "en"."""
    return str(_locale(language, currency_code))


@cache  # parsed once: a history table formats an amount per row
def _locale(language: str, currency_code: str | None = None) -> Locale:
    territory = TERRITORIES.get((currency_code or "").upper())
    if territory:
        try:
            return Locale.parse(f"{language}_{territory}")
        except UnknownLocaleError:
            pass
    return Locale.parse(language)


def money(minor: int, code: str, language: str | None = None) -> str:
    """An amount in minor units as the locale writes it, with the currency's symbol (CLDR's: DA, DT, د.ج.)."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise MoneyError(f"amount: {minor!r} is not an integer number of minor units")
    cur = currency(code)
    locale = _locale(language or i18n.language(), cur.code)
    # CLDR's digits for DZD, TND and EUR are config.money's exponents (a test holds them equal), so the
    # Decimal is shown exactly, never rounded.
    text = format_currency(Decimal(minor).scaleb(-cur.exponent), cur.code, locale=locale)
    return _space_symbol(text, get_currency_symbol(cur.code, locale))


def _space_symbol(text: str, symbol: str) -> str:
    """CLDR's currencySpacing, which Babel does not apply: a symbol ending (or starting) with a letter gets a
    no-break space next to the digits ("DZD11,273.00" -> "DZD 11,273.00"); "$1" or "1 DA" are left alone."""
    at = text.find(symbol)
    if at < 0:
        return text
    end = at + len(symbol)
    if end < len(text) and text[end].isdigit() and not _symbol_or_space(symbol[-1]):
        return f"{text[:end]}\u00a0{text[end:]}"
    if at > 0 and text[at - 1].isdigit() and not _symbol_or_space(symbol[0]):
        return f"{text[:at]}\u00a0{text[at:]}"
    return text


def _symbol_or_space(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "SZ"


def number(value: int | Decimal, code: str | None = None, language: str | None = None) -> str:
    """A count or a quantity with the locale's digit grouping: 2000 -> '2\u202f000' in fr."""
    return format_decimal(value, locale=_locale(language or i18n.language(), code))


def date_text(dt: datetime, language: str | None = None) -> str:
    """The local calendar date, numeric, in the locale's order: '22/11/2026' (fr), '11/22/2026' (en)."""
    return format_skeleton("yMd", clock.local(dt), locale=_locale(language or i18n.language()))


def time_text(dt: datetime, seconds: bool = False, language: str | None = None) -> str:
    """The local time on the 24-hour clock the counters use ('09:14', '09:14:03'), in the locale's digits.

    A skeleton rather than CLDR's "short time": that one is 12-hour for fr_DZ and ar ("9:14 AM", "9:14 ص").
    Date and time patterns do not differ by territory in CLDR for fr and ar, so the language is enough.
    """
    return format_skeleton("Hms" if seconds else "Hm", clock.local(dt), locale=_locale(language or i18n.language()))

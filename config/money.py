"""Money: integers in minor units with an ISO 4217 code. Never a float.

>>> parse_amount("1234.50", "DZD")
123450
>>> format_amount(123450, "DZD")
'1234.50'
>>> parse_amount("12.345", "TND")
12345
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Currency:
    code: str
    numeric: str  # ISO 4217 numeric, 3 digits, as Concert sends it
    exponent: int  # digits after the decimal point


CURRENCIES: dict[str, Currency] = {
    "DZD": Currency("DZD", "012", 2),
    "TND": Currency("TND", "788", 3),
    "EUR": Currency("EUR", "978", 2),
}


class MoneyError(ValueError):
    """An amount or currency that cannot be used as money."""


def currency(code: str) -> Currency:
    try:
        return CURRENCIES[code.upper()]
    except KeyError:
        raise MoneyError(f"currency: unknown ISO 4217 code {code!r} (known: {', '.join(CURRENCIES)})") from None


def currency_by_numeric(numeric: str) -> Currency:
    for c in CURRENCIES.values():
        if c.numeric == numeric:
            return c
    raise MoneyError(f"currency: unknown ISO 4217 numeric code {numeric!r}")


# Bounded: 15 digits hold any amount (Int63 is 19) and keep int() far from its 4300-digit ValueError.
_DECIMAL = re.compile(r"^(\d{1,15})(?:[.,](\d{1,15}))?$")


def parse_amount(text: str, code: str) -> int:
    """Parse a decimal amount typed by a person ("1234.50", "1234,5", "1234") into minor units.

    Refuses more decimals than the currency has, signs, exponents, more than 15 digits and anything not a
    plain number: always MoneyError, never another error.

    >>> try:
    ...     parse_amount("9" * 5000, "DZD")
    ... except MoneyError as e:
    ...     print(e)
    amount: '99999999999999999999...' is not a positive decimal number of at most 15 digits
    """
    cur = currency(code)
    s = text.strip().replace(" ", "").replace("\u00a0", "")
    m = _DECIMAL.match(s)
    if not m:
        shown = repr(text[:20] + "..." if len(text) > 20 else text)
        raise MoneyError(f"amount: {shown} is not a positive decimal number of at most 15 digits")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > cur.exponent:
        raise MoneyError(f"amount: {text!r} has more than {cur.exponent} decimals for {cur.code}")
    return int(whole) * 10**cur.exponent + int(frac.ljust(cur.exponent, "0") or "0")


def format_amount(minor: int, code: str, *, with_code: bool = False) -> str:
    """Format minor units as a decimal string: 123450 DZD -> "1234.50"."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise MoneyError(f"amount: {minor!r} is not an integer number of minor units")
    cur = currency(code)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**cur.exponent)
    text = f"{sign}{q}.{r:0{cur.exponent}d}" if cur.exponent else f"{sign}{q}"
    return f"{text} {cur.code}" if with_code else text

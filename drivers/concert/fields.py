"""What the E+ and V3 codecs share: the error types, and the checks of the amount and currency fields.

    from drivers.concert.fields import check_amount, currency_numeric
    check_amount(123450)                      # 123450, or AmountError saying why it cannot go on the line
    currency_numeric("DZD")                   # "012": both protocols send the ISO 4217 numeric code

>>> check_amount(10**8, 8, "the Concert amount field")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
drivers.concert.fields.AmountError: amount: 100000000 has 9 digits; the Concert amount field holds 8 ...
>>> currency_numeric("TND")
'788'
"""

from __future__ import annotations

import re

from config.money import MoneyError, currency, currency_by_numeric


class ConcertError(ValueError):
    """Something that cannot go on the line, or came off it malformed. The message names the field or byte."""


class AmountError(ConcertError):
    """An amount the terminal's amount field cannot carry exactly. Raised before anything is sent."""


def check_amount(amount: object, digits: int, field: str) -> int:
    """The amount as it will go on the line, or AmountError saying why it cannot (before anything is sent)."""
    most = 10**digits - 1
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise AmountError(f"amount: {amount!r} is not an integer number of minor units")
    if amount < 0:
        raise AmountError(f"amount: {amount} is negative; a payment amount is positive")
    if amount == 0:
        raise AmountError("amount: 0; a terminal cannot charge nothing (at least 1 minor unit)")
    if amount > most:
        raise AmountError(
            f"amount: {amount} has {len(str(amount))} digits; {field} holds {digits} (at most {most} minor units)"
        )
    return amount


def currency_numeric(code: str) -> str:
    """ISO 4217 numeric code for an alphabetic one ("DZD" -> "012"); a numeric one must be known."""
    try:
        if re.fullmatch(r"\d{3}", code):
            return currency_by_numeric(code).numeric
        return currency(code).numeric
    except MoneyError as e:
        raise ConcertError(str(e)) from None

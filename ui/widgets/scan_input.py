"""The bill reference field: what a USB barcode scanner types, whatever keyboard layout it was left in.

A scanner is a keyboard. Left in US mode on an AZERTY counter (the kiosk's XKB_DEFAULT_LAYOUT=fr), it sends
the keys of the digit row unshifted, which AZERTY reads as & é " ' ( - è _ ç à: the field maps them back to
1 2 3 4 5 6 7 8 9 0 (review 6, finding 11), typed or pasted, before the field's own `restrict` applies.

    >>> "&é\\"'(-è_çà".translate(AZERTY_DIGITS)
    '1234567890'
"""

from __future__ import annotations

from textual.widgets import Input

# The AZERTY keyboard's unshifted digit row, key by key from 1 to 0.
AZERTY_DIGIT_ROW = "&é\"'(-è_çà"
AZERTY_DIGITS = str.maketrans(AZERTY_DIGIT_ROW, "1234567890")


class ScanInput(Input):
    """An Input whose typed or pasted text has the AZERTY digit row read as digits (bill references are
    digits and Latin letters only; none of these characters can be meant)."""

    def replace(self, text: str, start: int, end: int) -> None:
        super().replace(text.translate(AZERTY_DIGITS), start, end)

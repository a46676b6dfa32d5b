"""Card numbers (PAN): masking, keyed tokens, Luhn. PCI DSS 3.4: the full PAN never leaves memory.

>>> mask_pan("6280580000001234")
'628058******1234'
>>> luhn_valid("4111111111111111")
True
>>> scrub_pans("card 4111 1111 1111 1111 refused")
'card 411111******1111 refused'

``scrub_pans`` is the one scrubber (logs, device fields, error texts): it masks any Luhn-valid run of 13 to 19
digits, plain or written in groups separated by one space or dash (``agent.logs`` documents its limits).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from typing import Any


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid (for building test PANs)."""
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise AssertionError("unreachable")


def mask_pan(pan: str) -> str:
    """First 6 and last 4 at most (PCI DSS 3.4.1); short PANs keep only the last 4."""
    pan = pan.strip()
    if not pan.isdigit():
        raise ValueError("pan: not all digits")
    if len(pan) >= 16:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    # 13..15-digit PANs: keep first 6 and last 4 only if at least 3 stay hidden; else last 4 only.
    if len(pan) - 10 >= 3:
        return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]
    return "*" * (len(pan) - 4) + pan[-4:]


def pan_token(pan: str, key: bytes | str) -> str:
    """Keyed HMAC-SHA256 of the PAN, hex: the same card gives the same token under the same company key."""
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise ValueError("cards.hmac_key: empty key, cannot tokenise a PAN")
    return hmac.new(key, pan.strip().encode(), hashlib.sha256).hexdigest()


_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_QUICK = re.compile(r"\d(?:[ -]?\d){12}")  # fewer than 13 digits close together: nothing to do
_MIN, _MAX = 13, 19
_GROUP_MAX = 6  # card numbers are written in groups of 4 to 6 digits (4-4-4-4, 4-6-5)
_INTERIOR_MIN = 3


def _covered(groups: list[str]) -> list[bool]:
    """Which digits of one run (its digit groups, in order) belong to a Luhn-valid 13..19 window."""
    digits = "".join(groups)
    owner: list[int] = []
    starts: list[int] = []
    for gi, g in enumerate(groups):
        starts.append(len(owner))
        owner.extend([gi] * len(g))
    covered = [False] * len(digits)
    n = len(digits)
    for s in range(n):
        for length in range(_MIN, min(_MAX, n - s) + 1):
            e = s + length
            first, last = owner[s], owner[e - 1]
            if first != last:
                # Across separators: like a card written in groups. The end groups may be glued to other
                # digits but give at most one group's worth; whole groups in between are 3..6 digits.
                head = starts[first] + len(groups[first]) - s
                tail = e - starts[last]
                if head > _GROUP_MAX or tail > _GROUP_MAX:
                    continue
                if any(not _INTERIOR_MIN <= len(groups[k]) <= _GROUP_MAX for k in range(first + 1, last)):
                    continue
            if luhn_valid(digits[s:e]):
                for i in range(s, e):
                    covered[i] = True
    return covered


# Written-out separators a person or a program may put between digit groups: read as one space (no-break and
# thin spaces, dots) or as nothing (zero-width characters, soft hyphen). Other scripts' digits are folded too.
_AS_SPACE = frozenset("\u00a0\u202f\u2007\u2009\u2002\u2003.\u066b\u066c\u2024\uff0e")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
_QUICK_ANY = re.compile(r"\d(?:[\s.\u066b\u066c\u2024\uff0e\u200b-\u200d\u2060\ufeff\u00ad-]{0,3}\d){12}")


def _folded(text: str) -> tuple[str, list[int]]:
    """text with separators as " " (or dropped) and every decimal digit ASCII; where[i]: the i-th char's origin."""
    out: list[str] = []
    where: list[int] = []
    for i, c in enumerate(text):
        if c in _INVISIBLE:
            continue
        if c in _AS_SPACE or (not c.isascii() and c.isspace()):
            c = " "
        elif not c.isascii():
            d = unicodedata.decimal(c, None)
            if d is not None:
                c = str(d)
            else:
                n = unicodedata.normalize("NFKC", c)
                c = n if n in ("-", " ") else c
        out.append(c)
        where.append(i)
    return "".join(out), where


def find_pans(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of text that hold a card number, as scrub_pans() would mask them: digits
    of any script, in groups separated by a space, dash, no-break or thin space, dot or zero-width character.

    >>> find_pans("6280.5800.0000.1239"), find_pans("6280\u00a05800\u00a00000\u00a01239")
    ([(0, 19)], [(0, 19)])
    """
    if text.isascii() and "." not in text:
        return _find_ascii(text)
    if not _QUICK_ANY.search(text):  # fewer than 13 digits close together, whatever is between them
        return []
    folded, where = _folded(text)
    return [(where[s], where[e - 1] + 1) for s, e in _find_ascii(folded)]


def _find_ascii(text: str) -> list[tuple[int, int]]:
    if not _QUICK.search(text):
        return []
    spans: list[tuple[int, int]] = []
    for m in _RUN.finditer(text):
        run = m.group()
        if sum(c.isdigit() for c in run) < _MIN:
            continue
        groups = re.split(r"[ -]", run)
        covered = _covered(groups)
        positions = [m.start() + i for i, c in enumerate(run) if c.isdigit()]
        i = 0
        while i < len(covered):
            if not covered[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(covered) and covered[j + 1]:
                j += 1
            spans.append((positions[i], positions[j] + 1))
            i = j + 1
    return spans


def scrub_pans(text: str) -> str:
    """Replace every card number in text by its masked form (first 6 and last 4 digits at most).

    Masking keeps some digits, which can meet the digits beside them and make a new Luhn-valid run: scrub
    again until nothing is left (each pass hides digits, so it ends), hiding every digit as a last resort.
    """
    for _ in range(_PASSES):
        spans = find_pans(text)
        if not spans:
            return text
        text = _mask(text, spans, keep_ends=True)
    spans = find_pans(text)
    return _mask(text, spans, keep_ends=False) if spans else text


_PASSES = 4


def _mask(text: str, spans: list[tuple[int, int]], *, keep_ends: bool) -> str:
    out: list[str] = []
    prev = 0
    for start, end in spans:
        out.append(text[prev:start])
        digits = "".join(c for c in text[start:end] if c.isdigit())
        out.append(mask_pan(digits) if keep_ends else "*" * len(digits))
        prev = end
    out.append(text[prev:])
    return "".join(out)


# --------------------------------------------------------------------------- text from devices
# A device's free field is not a log line: a card number may be written with any separator (dots, slashes,
# double spaces) or split across two fields. So a free field is judged by its digits alone, and dropped whole.

_PAN_MIN, _PAN_MAX = 13, 19


def digits_hold_pan(text: str) -> bool:
    """True when the digits of ``text``, every other character ignored, contain a Luhn-valid run of 13 to 19
    digits that starts with 1..9 (ISO/IEC 7812 issues no card number starting with 0).

    >>> digits_hold_pan("4761.7390.0101.0010")
    True
    >>> digits_hold_pan("REF 000000000001")
    False
    """
    digits = "".join(c for c in text if "0" <= c <= "9")
    n = len(digits)
    for s in range(n - _PAN_MIN + 1):
        if digits[s] == "0":
            continue
        for length in range(_PAN_MIN, min(_PAN_MAX, n - s) + 1):
            if luhn_valid(digits[s : s + length]):
                return True
    return False


def run_holds_pan(text: str) -> bool:
    """True when one unbroken run of digits in ``text`` holds a card number (see :func:`digits_hold_pan`): for
    values that are identifiers made of hex digits (an AID), where letters do not separate digits by chance.

    >>> run_holds_pan("A0000000031010"), run_holds_pan("A4761739001010010")
    (False, True)
    """
    return any(digits_hold_pan(run) for run in re.findall(r"\d{13,}", text))


_MASKED_REPORT = re.compile(r"(\d{0,6})([*#Xx.]+)(\d{0,4})")


def mask_reported_pan(value: str) -> str | None:
    """A card number as a terminal reported it, masked as we keep it (first 6 + last 4 at most, ``*``), or None.

    Terminals send a partial PAN (``628058######1234``, ``***********0674``); one that sends 12 to 19 digits is
    masked here (Luhn-valid or not); anything else is not a card number we can keep.

    >>> mask_reported_pan("628058######1234")
    '628058******1234'
    >>> mask_reported_pan("6280580000001234")
    '628058******1234'
    >>> mask_reported_pan("62805800000012##") is None
    True
    >>> mask_reported_pan("123456..1234") is None  # 2 hidden digits: not what the contract keeps
    True
    """
    v = value.strip()
    if not 12 <= len(v) <= 19:
        return None
    if v.isdigit():
        return mask_pan(v)
    m = _MASKED_REPORT.fullmatch(v)
    if m is None:
        return None
    masked = m.group(1) + "*" * len(m.group(2)) + m.group(3)
    # Kept only as the contract's PanMasked: a form the server refuses would make an approved upload rejected.
    return masked if masked_pan_fault(masked) is None else None


SAFE_SCAN = 64 * 1024  # characters scrubbed at most: far beyond any limit asked, so the cut below sees none


def safe_text(value: object, limit: int = 300) -> str:
    """What may be kept or shown of a text that came from outside (a device, a driver, an exception): card
    numbers masked, control characters made spaces (one line), at most ``limit`` characters.

    Scrubbed before it is cut, so a cut never leaves the head of a card number unmasked.

    >>> safe_text("refused\\ncard 4111111111111111", 40)
    'refused card 411111******1111'
    >>> safe_text("x" * 500, 10)
    'xxxxxxxxxx'
    """
    text = value if isinstance(value, str) else str(value)
    text = "".join(c if c.isprintable() else " " for c in text[:SAFE_SCAN])
    return scrub_pans(text)[:limit]


def safe_data(value: object, limit: int = 300, *, depth: int = 4, items: int = 32) -> object:
    """``value`` (a detail dict for the journal) with every text made :func:`safe_text` and its size bounded:
    at most ``items`` entries per dict or list, ``depth`` levels; numbers, booleans and None kept as they are.

    >>> safe_data({"answer": {"private": "REF 4111111111111111"}, "n": 3, "x": ["a\\nb"] * 40}, 20)["answer"]
    {'private': 'REF 411111******1111'}
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth <= 0:
        return safe_text(value, limit)
    if isinstance(value, dict):
        return {safe_text(k, 64): safe_data(v, limit, depth=depth - 1, items=items)
                for k, v in list(value.items())[:items]}
    if isinstance(value, list | tuple):
        return [safe_data(v, limit, depth=depth - 1, items=items) for v in list(value)[:items]]
    return safe_text(value, limit)


def safe_detail(detail: dict[str, Any], limit: int = 300) -> dict[str, Any]:
    """:func:`safe_data` of a journal ``detail`` dict, typed as one."""
    out = safe_data(detail, limit)
    return out if isinstance(out, dict) else {}


_PAN_MASKED = re.compile(r"[0-9]{0,6}[*Xx#]{3,}[0-9]{0,4}")  # contract/billing-api.yaml PanMasked


def masked_pan_fault(value: object, *, last4: bool = False) -> str | None:
    """Why ``value`` is not a masked card number as the contract's PanMasked keeps it, or None when it is: the
    one rule for what a cashier types off a ticket, what the F6 screen shows, and what the server accepts.

    8 to 23 characters; at most the first 6 and the last 4 digits shown, at least 3 masked (``*Xx#``) between
    (PCI DSS 3.4.1); with ``last4``, the last 4 digits shown (what a ticket prints). The fault, by name:
    ``full`` (holds a card number, or is more digits than a masked one shows), ``chars``, ``length``, ``shown``
    (digits where they must be hidden, or too few hidden), ``last4``.

    >>> masked_pan_fault("628058******1234"), masked_pan_fault("4761 7390 0101 0010")
    (None, 'full')
    >>> masked_pan_fault("628058******12", last4=True), masked_pan_fault("62805*1****1234")
    ('last4', 'shown')
    """
    if not isinstance(value, str):
        return "chars"
    if (value[:64].isdigit() and len(value) > 10) or digits_hold_pan(value[:64]):
        return "full"
    if any(not ("0" <= c <= "9" or c in "*Xx#") for c in value):
        return "chars"
    if not 8 <= len(value) <= 23:
        return "length"
    if not _PAN_MASKED.fullmatch(value):
        return "shown"
    if last4 and not value[-4:].isdigit():
        return "last4"
    return None

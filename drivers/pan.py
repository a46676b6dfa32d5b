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


def find_pans(text: str) -> list[tuple[int, int]]:
    """Character spans (start, end) of text that hold a card number, as scrub_pans() would mask them."""
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

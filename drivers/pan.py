"""Card numbers (PAN): masking, keyed tokens, Luhn. PCI DSS 3.4: the full PAN never leaves memory.

>>> mask_pan("6280580000001234")
'628058******1234'
>>> luhn_valid("4111111111111111")
True
"""

from __future__ import annotations

import hashlib
import hmac


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

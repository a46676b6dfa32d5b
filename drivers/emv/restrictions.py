"""Processing restrictions (EMV Book 3 10.4): application versions, usage control, effective and expiry dates.

Each finding is a TVR bit; nothing here stops the transaction (terminal action analysis decides).

>>> from drivers.emv.tvr import Tvr
>>> tvr = Tvr()
>>> card = {0x9F08: b"\\x00\\x8c", 0x5F24: bytes.fromhex("190831"), 0x9F07: b"\\xff\\x00", 0x5F28: b"\\x00\\x12"}
>>> check(card, terminal_version=b"\\x00\\x8c", country="012", today=_dt.date(2026, 11, 30), tvr=tvr)
>>> tvr.names()
['expired application']
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from drivers.emv import tvr as T

# Application Usage Control (9F07) byte 1 (Book 3 C2)
AUC_DOMESTIC_GOODS = 0x20
AUC_INTERNATIONAL_GOODS = 0x10
AUC_DOMESTIC_SERVICES = 0x08
AUC_INTERNATIONAL_SERVICES = 0x04
AUC_NOT_ATM = 0x01


def _date(raw: bytes | None) -> tuple[int, int, int] | None:
    """YYMMDD (n6) -> (year, month, day), compared as numbers (issuers write day 31 in any month, as
    ``5F24 271131``); a malformed date is None (the caller sets the bit that fits)."""
    if raw is None or len(raw) != 3:
        return None
    digits = raw.hex()
    if not digits.isdigit():
        return None
    yy, mm, dd = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    if not 1 <= mm <= 12 or not 1 <= dd <= 31:
        return None
    return (2000 + yy if yy < 50 else 1900 + yy, mm, dd)


def check(card: Mapping[int, bytes], *, terminal_version: bytes, country: str, today: _dt.date, tvr: T.Tvr) -> None:
    """Sets VERSIONS_DIFFER, SERVICE_NOT_ALLOWED, NOT_YET_EFFECTIVE, EXPIRED as Book 3 10.4 says."""
    now = (today.year, today.month, today.day)
    version = card.get(0x9F08)
    if version is not None and version != terminal_version:
        tvr.set(T.VERSIONS_DIFFER)
    auc = card.get(0x9F07)
    if auc is not None:
        issuer_country = card.get(0x5F28)
        if len(auc) < 2:
            tvr.set(T.SERVICE_NOT_ALLOWED)
        else:
            # A bill payment is goods or services at an attended terminal (not an ATM).
            domestic = issuer_country is not None and issuer_country.hex()[-3:] == country
            wanted = (AUC_DOMESTIC_GOODS | AUC_DOMESTIC_SERVICES) if domestic else (
                AUC_INTERNATIONAL_GOODS | AUC_INTERNATIONAL_SERVICES)
            if not auc[0] & wanted or not auc[0] & AUC_NOT_ATM:
                tvr.set(T.SERVICE_NOT_ALLOWED)
    effective = card.get(0x5F25)
    if effective is not None:
        day = _date(effective)
        if day is None or day > now:
            tvr.set(T.NOT_YET_EFFECTIVE)
    expiry = card.get(0x5F24)
    day = _date(expiry)
    if expiry is not None and (day is None or day < now):
        tvr.set(T.EXPIRED)

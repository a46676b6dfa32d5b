"""Terminal risk management (EMV Book 3 10.6): floor limit, random transaction selection, velocity checking.

>>> from drivers.emv.tvr import Tvr
>>> tvr = Tvr()
>>> floor_limit(5000, 10000, tvr), tvr.hex()
(False, '0000000000')
>>> floor_limit(10000, 10000, tvr), tvr.hex()
(True, '0000008000')
>>> tvr = Tvr(); velocity(lcol=2, ucol=5, atc=10, last_online_atc=6, tvr=tvr); tvr.names()
['lower consecutive offline limit exceeded']
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from drivers.emv import tvr as T


def floor_limit(amount: int, limit: int, tvr: T.Tvr) -> bool:
    """Equal to or over the floor limit goes online (Book 3 10.6.1)."""
    if amount >= limit:
        tvr.set(T.EXCEEDS_FLOOR_LIMIT)
        return True
    return False


@dataclass(frozen=True)
class RandomSelection:
    target_percent: int = 0
    max_percent: int = 0
    threshold: int = 0  # minor units


def random_selection(amount: int, floor: int, params: RandomSelection, tvr: T.Tvr,
                     draw: random.Random | None = None) -> bool:
    """Book 3 10.6.2: below the threshold, the target percentage; between threshold and floor limit, a
    percentage growing linearly up to the maximum."""
    if amount >= floor or (params.target_percent == 0 and params.max_percent == 0):
        return False
    rng = draw or random.SystemRandom()
    n = rng.randint(1, 99)
    if amount < params.threshold:
        chosen = n <= params.target_percent
    else:
        span = max(floor - params.threshold, 1)
        share = (amount - params.threshold) / span
        percent = params.target_percent + share * (params.max_percent - params.target_percent)
        chosen = n <= percent
    if chosen:
        tvr.set(T.RANDOMLY_SELECTED)
    return chosen


def velocity(*, lcol: int | None, ucol: int | None, atc: int | None, last_online_atc: int | None,
             tvr: T.Tvr) -> None:
    """Book 3 10.6.3: only when the card gives both limits (9F14, 9F23). ATC (9F36) or last online ATC (9F13)
    missing: both limits exceeded. A last online ATC of zero: a new card."""
    if lcol is None or ucol is None:
        return
    if atc is None or last_online_atc is None or atc <= last_online_atc:
        tvr.set(T.LCOL_EXCEEDED)
        tvr.set(T.UCOL_EXCEEDED)
    else:
        offline = atc - last_online_atc
        if offline > lcol:
            tvr.set(T.LCOL_EXCEEDED)
        if offline > ucol:
            tvr.set(T.UCOL_EXCEEDED)
    if last_online_atc == 0:
        tvr.set(T.NEW_CARD)

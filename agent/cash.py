"""Cash at the counter: the stamp duty rule, change due, and a drawer count by denomination.

Integers in minor units only. The rule comes from `[cash.stamp_duty]` (config.cash); cash itself is taken
when `payments.methods` lists it.

>>> from config.cash import StampDutyConfig
>>> rule = StampDutyConfig(enabled=True, per_slice=100, slice=10000, minimum=500, maximum=250000)
>>> stamp_duty(345600, "cash", rule)      # 35 started slices of 100,00 DA -> 35,00 DA
3500
>>> stamp_duty(10000, "cash", rule)       # one slice: 1,00 DA, lifted to the 5,00 DA minimum
500
>>> stamp_duty(345600, "card_terminal", rule)
0
>>> change_due(400000, 349100)
50900
>>> count_total({20000: 3, 500: 2})
61000
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.errors import InvalidAmount
from config.cash import StampDutyConfig

# A count sheet bound: more pieces of one denomination than this is a typing slip, not a drawer.
MAX_PIECES = 100_000


def _round(value: int, unit: int, how: str) -> int:
    if unit <= 1:
        return value
    down = value // unit * unit
    if how == "down" or down == value:
        return down
    if how == "up":
        return down + unit
    # nearest, a half rounds up (the customer is never charged a fraction of the unit)
    return down + unit if (value - down) * 2 >= unit else down


def stamp_duty(amount: int, method: str, rule: StampDutyConfig) -> int:
    """The duty on one payment of `amount` minor units by `method`; 0 when the rule is off or not for it.

    `per_slice` for each started `slice`, rounded to `rounding_unit`, then held within [minimum, maximum]
    (so the bounds are exact whatever the rounding).
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise InvalidAmount(f"amount: {amount!r} must be a non-negative number of minor units")
    if not rule.enabled or method not in rule.methods or amount == 0:
        return 0
    slices = -(-amount // rule.slice)  # started slices: ceiling division, exact on integers
    duty = _round(slices * rule.per_slice, rule.rounding_unit, rule.rounding)
    duty = max(duty, rule.minimum)
    if rule.maximum:
        duty = min(duty, rule.maximum)
    return duty


@dataclass(frozen=True)
class CashDue:
    """What a customer pays for a basket: the bills' amounts, the duty on each, and the sum of both."""

    amounts: tuple[int, ...]
    duties: tuple[int, ...]

    @property
    def subtotal(self) -> int:
        return sum(self.amounts)

    @property
    def duty(self) -> int:
        return sum(self.duties)

    @property
    def total(self) -> int:
        return self.subtotal + self.duty


def basket_due(amounts: Sequence[int], method: str, rule: StampDutyConfig) -> CashDue:
    """The duty is per payment (one per bill, as each is uploaded with its own `stamp_duty`).

    >>> from config.cash import StampDutyConfig
    >>> due = basket_due([10000, 20001], "cash", StampDutyConfig(enabled=True, per_slice=100, slice=10000))
    >>> due.duties, due.total
    ((100, 300), 30401)
    """
    return CashDue(tuple(amounts), tuple(stamp_duty(a, method, rule) for a in amounts))


def change_due(tendered: int, due: int) -> int:
    """The change to hand back; InvalidAmount (one line) when less than due was tendered."""
    if isinstance(tendered, bool) or not isinstance(tendered, int) or tendered < 0:
        raise InvalidAmount(f"tendered: {tendered!r} must be a non-negative number of minor units")
    if tendered < due:
        raise InvalidAmount(f"tendered: {tendered} is less than the {due} due")
    return tendered - due


def count_total(counts: Mapping[int, int]) -> int:
    """The value of a drawer count, {denomination: pieces}, in minor units."""
    return sum(d * n for d, n in counts.items())


def check_count(counts: Mapping[int, int], denominations: Sequence[int]) -> dict[int, int]:
    """A count sheet checked at the edge: only the configured denominations, whole non-negative pieces,
    bounded; returns it with every denomination present (0 when not counted), largest first."""
    allowed = set(denominations)
    out = {d: 0 for d in sorted(allowed, reverse=True)}
    for d, n in counts.items():
        if d not in allowed:
            raise InvalidAmount(f"count: {d} is not a note or coin of this drawer")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_PIECES:
            raise InvalidAmount(f"count of {d}: {n!r} must be a whole number of pieces, 0 to {MAX_PIECES}")
        out[d] = n
    return out

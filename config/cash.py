"""The `[cash]` section: stamp duty on cash payments and the drawer's denominations.

Whether cash is taken at all is `payments.methods` (the one switch for every method): this section only says
how cash is handled once it is.

    [cash.stamp_duty]            # off by default; no figure is built in: the agency enters its rule
    enabled = true
    per_slice = 100              # 1,00 DA of duty ...
    slice = 10000                # ... per started 100,00 DA of the amount paid
    minimum = 500                # at least 5,00 DA
    maximum = 250000             # at most 2 500,00 DA (0: no maximum)
    rounding = "up"              # the duty rounded up|down|nearest to a multiple of `rounding_unit`
    rounding_unit = 100          # whole dinars
    methods = ["cash"]

    [cash.denominations]         # the drawer's notes and coins, minor units, per currency
    DZD = [200000, 100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100]

>>> CashConfig().stamp_duty.enabled
False
>>> CashConfig().denominations["TND"][:3]
[50000, 20000, 10000]
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from config.section import Section

# What a counter's drawer holds, largest first, in minor units. DZD: the 2000, 1000, 500 and 200 DA notes and
# the 200 (bimetal), 100, 50, 20, 10, 5, 2 and 1 DA coins (200 DA is a note and a coin: one line). TND: the
# 50, 20, 10 and 5 dinar notes and the 5, 2, 1 dinar and 500, 200, 100, 50, 20, 10 millime coins.
DEFAULT_DENOMINATIONS: dict[str, list[int]] = {
    "DZD": [200000, 100000, 50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100],
    "TND": [50000, 20000, 10000, 5000, 2000, 1000, 500, 200, 100, 50, 20, 10],
}

# A bound on every figure of the rule (minor units): 10^12 is far above any bill and keeps products exact.
_MAX = 10**12


class StampDutyConfig(Section):
    """A duty of `per_slice` for each started `slice` of the amount, kept within [minimum, maximum], rounded.
    Strict: money is never guessed from `true` or "100" (a TOML typo), it is refused naming the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)

    enabled: bool = False
    per_slice: int = Field(0, ge=0, le=_MAX)
    slice: int = Field(1, ge=1, le=_MAX)
    minimum: int = Field(0, ge=0, le=_MAX)
    maximum: int = Field(0, ge=0, le=_MAX)  # 0: no maximum
    rounding: Literal["up", "down", "nearest"] = "up"
    rounding_unit: int = Field(1, ge=1, le=_MAX)
    methods: list[Literal["card_terminal", "card_reader", "cash"]] = ["cash"]

    @model_validator(mode="after")
    def _bounds(self) -> StampDutyConfig:
        if self.maximum and self.maximum < self.minimum:
            raise ValueError("cash.stamp_duty.maximum: must be 0 (none) or at least minimum")
        if set(self.methods) - {"cash"}:
            # The contract (1.1) carries `stamp_duty` on a cash payment only: a card payment with one would be
            # refused by the journal and the server. Kept a list for the day the contract widens it.
            raise ValueError('cash.stamp_duty.methods: only "cash" (contract 1.1 carries stamp duty on cash only)')
        if self.enabled and not self.per_slice and not self.minimum:
            raise ValueError("cash.stamp_duty: enabled with per_slice = 0 and minimum = 0 charges nothing")
        return self


class CashConfig(Section):
    stamp_duty: StampDutyConfig = StampDutyConfig()
    denominations: dict[str, list[int]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_DENOMINATIONS.items()}
    )

    @field_validator("denominations")
    @classmethod
    def _denominations(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for code, values in v.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r}: an ISO 4217 code such as DZD or TND")
            if not 1 <= len(values) <= 30:
                raise ValueError(f"{code}: 1 to 30 notes and coins")
            if any(isinstance(x, bool) or x <= 0 or x > _MAX for x in values):
                raise ValueError(f"{code}: each note or coin is a positive amount in minor units")
            if len(set(values)) != len(values):
                raise ValueError(f"{code}: a note or coin is listed twice")
        # Largest first, as a count sheet reads.
        return {code: sorted(values, reverse=True) for code, values in v.items()}

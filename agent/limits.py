"""Offline limits (like Stripe Terminal's offline mode): how much may be taken while the server is away."""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import OfflineLimitExceeded
from agent.journal import QueueStats
from config.money import format_amount
from config.schema import OfflineConfig


@dataclass(frozen=True)
class LimitState:
    count: int
    total: int
    oldest_age: float | None
    warn: bool  # the oldest unsent payment is older than offline.warn_after


def check_offline(limits: OfflineConfig, stats: QueueStats, amount: int, count: int, currency: str) -> None:
    """Refuse a new offline payment of `amount` over `count` bills past any limit, with a clear reason."""
    if amount > limits.max_payment_amount:
        raise OfflineLimitExceeded(
            f"offline: {format_amount(amount, currency, with_code=True)} is over the offline limit per payment "
            f"({format_amount(limits.max_payment_amount, currency, with_code=True)}); "
            "wait for the link or use another means"
        )
    # Payments whose outcome is in doubt may have been charged: they count as unsent money.
    unsent_total = stats.total.get(currency, 0) + stats.in_doubt_total.get(currency, 0)
    if unsent_total + amount > limits.max_total_amount:
        raise OfflineLimitExceeded(
            f"offline: unsent payments would total {format_amount(unsent_total + amount, currency, with_code=True)}, "
            f"over the limit of {format_amount(limits.max_total_amount, currency, with_code=True)}"
        )
    unsent = stats.count + stats.in_doubt_count
    if unsent + count > limits.max_count:
        raise OfflineLimitExceeded(
            f"offline: {unsent} payments are waiting for upload; the limit is {limits.max_count}"
        )


def limit_state(limits: OfflineConfig, stats: QueueStats, currency: str) -> LimitState:
    age = stats.oldest_age()
    return LimitState(
        count=stats.count,
        total=stats.total.get(currency, 0),
        oldest_age=age,
        warn=age is not None and age > limits.warn_after,
    )

"""Journal states of a payment and the transitions allowed between them (DESIGN.md)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CREATED = "created"
    AUTHORIZING = "authorizing"
    APPROVED = "approved"
    UPLOADED = "uploaded"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"
    REJECTED = "rejected"


ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.AUTHORIZING, State.CANCELLED}),
    State.AUTHORIZING: frozenset({State.APPROVED, State.DECLINED, State.CANCELLED, State.UNKNOWN}),
    State.UNKNOWN: frozenset({State.APPROVED, State.DECLINED}),
    State.APPROVED: frozenset({State.UPLOADED, State.REJECTED}),
    State.UPLOADED: frozenset(),
    State.DECLINED: frozenset(),
    State.CANCELLED: frozenset(),
    State.REJECTED: frozenset(),
}

# Payments that hold money the server has not recorded yet.
UNSENT = (State.APPROVED,)
# A payment in one of these may have charged the card: no new payment for that bill may start.
IN_DOUBT = (State.AUTHORIZING, State.UNKNOWN)

METHODS = ("card_terminal", "card_reader", "cash")

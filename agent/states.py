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
# The customer's money was taken: what the Z report adds up. A payment the server rejected counts (the card
# was charged all the same; someone must sort it out with the billing office).
TAKEN = (State.APPROVED, State.UPLOADED, State.REJECTED)
# A person must look at these: the outcome is in doubt or the server refused the upload.
ATTENTION = (State.UNKNOWN, State.REJECTED, State.AUTHORIZING)

METHODS = ("card_terminal", "card_reader", "cash")


def needs_attention(state: str, notice: str | None) -> bool:
    """Whether a supervisor must look at a payment (F4 list, Z report): in doubt, rejected by the server, or
    with a server notice (e.g. credited to the customer's account instead of the bill).

    >>> needs_attention("unknown", None), needs_attention("uploaded", "credited_to_account")
    (True, True)
    >>> needs_attention("uploaded", None)
    False
    """
    return state in ATTENTION or bool(notice)

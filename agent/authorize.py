"""How a payment method takes the money: the Authorizer protocol, and cash.

The payment flow writes the journal; an authorizer only talks to the card, the terminal or the acquirer.
Rules every authorizer keeps:
- "cancelled" only when certain no money was taken (cancel before the amount left us, or the device
  confirmed the cancellation);
- "unknown" whenever the amount may have reached the terminal or acquirer without a definitive answer;
- never raise after the amount was sent. To stop before that, raise NothingSent (recorded as
  cancelled); any other exception is recorded as unknown, since the flow cannot tell whether money moved;
- a device failure before anything was sent (a card that cannot be read, a terminal that cannot be
  reached) is returned as "declined" (the card is unusable) or "cancelled", never raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agent.errors import GuichetError

Outcome = Literal["approved", "declined", "cancelled", "unknown"]
StatusCallback = Callable[[str], None]


class NothingSent(GuichetError):
    """Raised by an authorizer that stopped before any amount left the agent: the payment is cancelled."""


@dataclass
class AuthRequest:
    transaction_id: str
    payment_ids: list[str]
    amount: int
    currency: str
    receipt_number: str
    online: bool


@dataclass
class AuthOutcome:
    status: Outcome
    card: dict[str, Any] | None = None  # scheme, pan_masked, pan_token, expiry, aid: never a full PAN
    code: str | None = None
    reference: str | None = None
    approved_at: str | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class Authorizer(Protocol):
    method: str

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome: ...


class CashAuthorizer:
    """Cash in the drawer: approved on the spot, no card."""

    method = "cash"

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        if cancel.is_set():
            return AuthOutcome("cancelled", message="cancelled by the cashier")
        return AuthOutcome("approved", code=None, reference=f"cash-{req.receipt_number}")

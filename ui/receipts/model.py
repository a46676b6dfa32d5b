"""What a printed receipt says, taken from the journal's payment rows, before any language or layout.

    receipt = Receipt.from_payments(payments, stamp_duty=500)     # the rows of one transaction
    receipt.total, receipt.pan_masked                            # 1127800, '628058******1234'

A receipt only ever holds the card number as the journal does (pan_masked); a value with more digits than
first 6 + last 4 is masked here by drivers.pan's rule, whatever its source, and every row is scrubbed (render.rows),
so no full PAN reaches a bitmap.

    >>> safe_pan("628058******1234")
    '628058******1234'
    >>> safe_pan("6280580000001234"), safe_pan("4761739001******"), safe_pan("47617390010*****0010")
    ('628058******1234', '', '****0010')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drivers.pan import mask_reported_pan, masked_pan_fault

MAX_BILLS = 50


def safe_pan(shown: str) -> str:
    """A card number as a receipt may show it, by drivers.pan's one rule: a masked number the contract keeps
    (masked_pan_fault) as it is; a full or terminal-masked one masked there (mask_reported_pan); anything
    else (digits where they must be hidden) only its last 4 digits, or nothing."""
    shown = str(shown).strip()[:32]
    if not shown or masked_pan_fault(shown) is None:
        return shown
    masked = mask_reported_pan(shown)
    if masked is not None:
        return masked
    return "****" + shown[-4:] if shown[-4:].isdigit() else ""


@dataclass(frozen=True)
class BillLine:
    reference: str
    amount: int
    period: str = ""
    customer: str = ""
    contract: str = ""


@dataclass(frozen=True)
class Receipt:
    number: str
    agency_id: str
    terminal_id: str
    cashier_id: str
    when: datetime
    currency: str
    bills: tuple[BillLine, ...]
    method: str
    stamp_duty: int = 0
    scheme: str = ""
    pan_masked: str = ""
    auth_code: str = ""
    state: str = "approved"
    offline: bool = False
    duplicate: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def subtotal(self) -> int:
        return sum(b.amount for b in self.bills)

    @property
    def total(self) -> int:
        """What the customer paid: the bills plus the stamp duty (cash)."""
        return self.subtotal + self.stamp_duty

    @classmethod
    def from_payments(cls, payments: list[Any], *, stamp_duty: int | None = None,
                      duplicate: bool = False) -> Receipt:
        """From the journal rows of one transaction (agent.journal Payment, one per bill). `stamp_duty` (minor
        units) overrides the rows' own; the cash engineer's rule computes it."""
        if not payments:
            raise ValueError("payments: a receipt needs at least one payment")
        first = payments[0]
        rows = payments[:MAX_BILLS]
        when = _time(first.captured_at)
        bills = []
        for p in rows:
            bill = p.bill or {}
            bills.append(BillLine(str(p.bill_reference), int(p.amount), str(bill.get("period", "") or ""),
                                  str(bill.get("customer_name", "") or ""), str(bill.get("contract", "") or "")))
        duty = stamp_duty if stamp_duty is not None else sum(int(getattr(p, "stamp_duty", 0) or 0) for p in rows)
        card = first.card or {}
        auth = first.authorization or {}
        state = first.state
        return cls(
            number=str(first.receipt_number), agency_id=str(first.agency_id), terminal_id=str(first.terminal_id),
            cashier_id=str(first.cashier_id), when=when, currency=str(first.currency), bills=tuple(bills),
            method=str(first.method), stamp_duty=int(duty), scheme=str(card.get("scheme", "") or ""),
            pan_masked=safe_pan(card.get("pan_masked", "") or ""), auth_code=str(auth.get("code", "") or ""),
            state=str(getattr(state, "value", state)), offline=bool(first.captured_offline), duplicate=duplicate,
        )


def _time(ts: str | datetime) -> datetime:
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)

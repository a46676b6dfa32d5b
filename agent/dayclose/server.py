"""The server's business day (`GET /v1/terminals/{id}/payments`, contract 1.1), paged and bounded.

    day = fetch_business_day(client, "ORAN-07-G2", "2026-11-30")    # ServerDay: entries, totals, pages
    day.entries[0].amount                                           # minor units, validated

agent.billing's client has no method for this list yet (its owner is asked to add `business_day_page`);
until then this module goes through the client's generic request, so the answer has the client's bounds
(size, depth, deadline) and is then validated here into typed entries. A bad record is one BadAnswer naming
`items[i].field`; a cursor that does not move, or more pages or records than a day can hold, is one too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent.billing import BillingClient, feed_cap
from agent.dayclose.reconcile import Entry
from agent.errors import BadAnswer
from contract.models import Currency, Cut64, Cut200, Int63, where

PAGE = 1000  # records asked per page (the contract allows 1..5000; 1000 keeps a page well under its cap)
MAX_PAGES = 200
MAX_RECORDS = 100_000  # a counter takes a few hundred payments a day; far above is a server fault


class _Item(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    transaction_id: Cut64 | None = None
    bill_reference: Cut200 | None = None
    amount: Int63
    currency: Currency
    stamp_duty: Int63 | None = None
    method: Literal["card_terminal", "card_reader", "cash"]
    receipt_number: Cut200 | None = None
    captured_at: Cut64 | None = None
    recorded_at: Cut64 | None = None


class _Page(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    items: Annotated[list[_Item], Field(max_length=5000)]
    next_cursor: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    totals: dict[str, Any] | None = None


@dataclass
class ServerDay:
    entries: list[Entry] = field(default_factory=list)
    totals: dict[str, Any] | None = None  # the server's own totals of the whole day, as it sent them
    pages: int = 0


def business_day_page(
    client: BillingClient, terminal_id: str, day: str, cursor: str | None = None, limit: int = PAGE
) -> tuple[list[Entry], str | None, dict[str, Any] | None]:
    """One page: (entries, next cursor or None, the day's totals)."""
    params: dict[str, Any] = {"business_day": day, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    path = f"terminals/{quote(terminal_id, safe='')}/payments"
    _, body = client._request("GET", path, params=params, max_body=feed_cap(limit))  # noqa: SLF001 (see above)
    return parse_page(body)


def parse_page(body: Any) -> tuple[list[Entry], str | None, dict[str, Any] | None]:
    """A business-day answer, validated: (entries, next cursor, totals), or one BadAnswer naming the field.

    >>> parse_page({"items": [{"payment_id": "p", "amount": 1200, "currency": "DZD", "method": "cash"}],
    ...             "next_cursor": None})[0][0].amount
    1200
    """
    try:
        page = _Page.model_validate(body)
    except ValidationError as e:
        raise BadAnswer(f"billing server: business day: {where(e)}") from None
    entries = [
        Entry(
            payment_id=i.payment_id,
            transaction_id=i.transaction_id or i.payment_id,
            bill_reference=i.bill_reference or "",
            amount=i.amount,
            currency=i.currency,
            stamp_duty=i.stamp_duty or 0,
            method=i.method,
            receipt_number=i.receipt_number or "",
            captured_at=i.captured_at or "",
        )
        for i in page.items
    ]
    return entries, page.next_cursor, page.totals


def fetch_business_day(
    client: BillingClient,
    terminal_id: str,
    day: str,
    *,
    limit: int = PAGE,
    max_pages: int = MAX_PAGES,
    max_records: int = MAX_RECORDS,
) -> ServerDay:
    """Every page of the server's day for `terminal_id`. Raises ServerUnreachable (and its BadAnswer) or
    ApiError; never returns part of a day as if it were whole."""
    out = ServerDay()
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        entries, nxt, totals = business_day_page(client, terminal_id, day, cursor, limit)
        out.pages += 1
        out.totals = totals if totals is not None else out.totals
        for e in entries:
            if e.payment_id not in seen:  # a page boundary may repeat one: once only
                seen.add(e.payment_id)
                out.entries.append(e)
        if len(out.entries) > max_records:
            raise BadAnswer(f"billing server: business day: more than {max_records} payments in a day")
        if nxt is None:
            return out
        if nxt == cursor:
            raise BadAnswer("billing server: business day: next_cursor does not move")
        if out.pages >= max_pages:
            raise BadAnswer(f"billing server: business day: more than {max_pages} pages")
        cursor = nxt

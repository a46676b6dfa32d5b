"""The server's business day (`GET /v1/terminals/{id}/payments`, contract 1.1), paged and bounded.

    day = fetch_business_day(client, "ORAN-07-G2", "2026-11-30")    # ServerDay: entries, totals, pages
    day.entries[0].amount                                           # minor units, validated

agent.billing's client has no method for this list yet (its owner is asked to add `business_day_page`);
until then this module goes through the client's generic request, so the answer has the client's bounds
(size, depth, deadline) and is then validated here into typed entries. A bad record is one BadAnswer naming
`items[i].field`; so is a cursor seen before, more pages than the day's totals need, more records than a day
can hold, an item captured on another day, a payment repeated with other content, and totals that the items
do not add up to (a payment the list leaves out). The whole close has one deadline (`budget` seconds).

`record_entry` is the one check of a `GET /v1/payments/{id}` record: ours by payment id and terminal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agent import clock
from agent.billing import BillingClient, feed_cap
from agent.dayclose.reconcile import Entry
from agent.errors import BadAnswer
from contract.models import Currency, Cut64, Cut200, Int63, where

PAGE = 1000  # records asked per page (the contract allows 1..5000; 1000 keeps a page well under its cap)
MAX_PAGES = 200
MAX_RECORDS = 100_000  # a counter takes a few hundred payments a day; far above is a server fault
BUDGET = 120.0  # seconds for the whole server side of a close (every page and lookup): then it is offline

Method = Literal["card_terminal", "card_reader", "cash"]


class _Item(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    payment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    transaction_id: Cut64 | None = None
    bill_reference: Cut200 | None = None
    amount: Int63
    currency: Currency
    stamp_duty: Int63 | None = None
    method: Method
    receipt_number: Cut200 | None = None
    captured_at: Cut64
    recorded_at: Cut64 | None = None


_Amounts = Annotated[dict[Currency, Int63], Field(max_length=10)]


class _MethodTotals(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    count: Int63
    amount: _Amounts


class DayTotals(BaseModel):
    """The server's totals of the whole day (not the page), as contract 1.1 sends them."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    count: Int63
    amount: _Amounts
    stamp_duty: _Amounts | None = None
    by_method: dict[Method, _MethodTotals] | None = None


class _Page(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    items: Annotated[list[_Item], Field(max_length=5000)]
    next_cursor: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = None
    totals: DayTotals | None = None


@dataclass
class ServerDay:
    entries: list[Entry] = field(default_factory=list)
    totals: DayTotals | None = None  # the server's own totals of the whole day, checked against the entries
    pages: int = 0


def business_day_page(
    client: BillingClient,
    terminal_id: str,
    day: str,
    cursor: str | None = None,
    limit: int = PAGE,
    timeout: float | None = None,
) -> tuple[list[Entry], str | None, DayTotals | None]:
    """One page: (entries, next cursor or None, the day's totals)."""
    params: dict[str, Any] = {"business_day": day, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    path = f"terminals/{quote(terminal_id, safe='')}/payments"
    _, body = client._request(  # noqa: SLF001 (see above)
        "GET", path, params=params, max_body=feed_cap(limit), timeout=timeout
    )
    return parse_page(body)


def _instant(text: str, name: str) -> None:
    try:
        clock.parse(text)
    except ValueError:
        raise BadAnswer(f"billing server: business day: {name}: {text[:40]!r} is not an RFC 3339 time") from None
    if "T" not in text.upper() or not (text[-1:] in "Zz" or text[-6:-5] in "+-"):
        raise BadAnswer(f"billing server: business day: {name}: {text[:40]!r} has no time zone offset")


def parse_page(body: Any) -> tuple[list[Entry], str | None, DayTotals | None]:
    """A business-day answer, validated: (entries, next cursor, totals), or one BadAnswer naming the field.

    >>> parse_page({"items": [{"payment_id": "p", "amount": 1200, "currency": "DZD", "method": "cash",
    ...             "captured_at": "2026-11-30T10:00:00+01:00"}], "next_cursor": None})[0][0].amount
    1200
    """
    try:
        page = _Page.model_validate(body)
    except ValidationError as e:
        raise BadAnswer(f"billing server: business day: {where(e)}") from None
    for n, item in enumerate(page.items):
        _instant(item.captured_at, f"items[{n}].captured_at")
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
            captured_at=i.captured_at,
        )
        for i in page.items
    ]
    return entries, page.next_cursor, page.totals


def _day_of(captured_at: str, tz: tzinfo | None) -> str:
    return clock.parse(captured_at).astimezone(tz).date().isoformat()


def _check_totals(out: ServerDay) -> None:
    """The server's whole-day totals against the entries it listed: a payment its pages left out (or one
    too many) is a BadAnswer, never a quiet gap."""
    t = out.totals
    if t is None:
        return
    amount: dict[str, int] = {}
    duty: dict[str, int] = {}
    methods: dict[str, tuple[int, dict[str, int]]] = {}
    for e in out.entries:
        amount[e.currency] = amount.get(e.currency, 0) + e.amount
        if e.stamp_duty:
            duty[e.currency] = duty.get(e.currency, 0) + e.stamp_duty
        n, amounts = methods.get(e.method, (0, {}))
        amounts[e.currency] = amounts.get(e.currency, 0) + e.amount
        methods[e.method] = (n + 1, amounts)
    def nonzero(values: dict[str, int]) -> dict[str, int]:  # a 0 total and an absent one say the same
        return {c: v for c, v in values.items() if v}

    amount, duty = nonzero(amount), nonzero(duty)
    methods = {m: (n, nonzero(a)) for m, (n, a) in methods.items()}
    faults = []
    if t.count != len(out.entries):
        faults.append(f"totals.count {t.count}, items {len(out.entries)}")
    if nonzero(t.amount) != amount:
        faults.append(f"totals.amount {dict(t.amount)}, items {amount}")
    if t.stamp_duty is not None and nonzero(t.stamp_duty) != duty:
        faults.append(f"totals.stamp_duty {dict(t.stamp_duty)}, items {duty}")
    if t.by_method is not None:
        theirs = {m: (v.count, nonzero(v.amount)) for m, v in t.by_method.items() if v.count}
        if theirs != methods:
            faults.append("totals.by_method differs from the items")
    if faults:
        raise BadAnswer("billing server: business day: the items do not add up to the day's totals ("
                        + "; ".join(faults)[:300] + "): a payment may be missing from the list")


def record_entry(record: dict[str, Any], *, payment_id: str, terminal_id: str) -> Entry:
    """A `GET /v1/payments/{id}` record (as agent.billing validated it) as an Entry, once it is the record of
    `payment_id` on `terminal_id` (when the server names a terminal): another payment's record is a BadAnswer.

    >>> try:
    ...     record_entry({"payment_id": "p2", "amount": 1, "currency": "DZD", "method": "cash"},
    ...                  payment_id="p1", terminal_id="T")
    ... except BadAnswer as e:
    ...     print(e)
    billing server: payment p1: the record is of payment 'p2'
    """
    got = str(record.get("payment_id") or "")
    if got != payment_id:
        raise BadAnswer(f"billing server: payment {payment_id}: the record is of payment {got[:64]!r}")
    term = record.get("terminal_id")
    if term is not None and term != terminal_id:
        raise BadAnswer(f"billing server: payment {payment_id}: the record is of terminal {str(term)[:64]!r},"
                        f" not {terminal_id}")
    return Entry(
        payment_id=payment_id,
        transaction_id=str(record.get("transaction_id") or ""),
        bill_reference=str(record.get("bill_reference") or ""),
        amount=int(record.get("amount") or 0),
        currency=str(record.get("currency") or ""),
        stamp_duty=int(record.get("stamp_duty") or 0),
        method=str(record.get("method") or ""),
        receipt_number=str(record.get("receipt_number") or ""),
        captured_at=str(record.get("captured_at") or ""),
    )


def fetch_business_day(
    client: BillingClient,
    terminal_id: str,
    day: str,
    *,
    limit: int = PAGE,
    max_pages: int = MAX_PAGES,
    max_records: int = MAX_RECORDS,
    tz: tzinfo | None = None,
    deadline: float | None = None,
) -> ServerDay:
    """Every page of the server's day for `terminal_id`, each item captured on `day` in the agency's zone
    `tz` (None: the machine's). `deadline`: a time.monotonic() instant for the whole paging (default now +
    BUDGET). Raises ServerUnreachable (and its BadAnswer) or ApiError; never returns part of a day as if it
    were whole."""
    date.fromisoformat(day)
    deadline = deadline if deadline is not None else time.monotonic() + BUDGET
    out = ServerDay()
    cursor: str | None = None
    cursors: set[str] = set()
    seen: dict[str, Entry] = {}
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BadAnswer(f"billing server: business day: not read whole in time ({out.pages} pages read)")
        entries, nxt, totals = business_day_page(client, terminal_id, day, cursor, limit, timeout=left)
        out.pages += 1
        if totals is not None:
            if out.totals is not None and totals != out.totals:
                raise BadAnswer(f"billing server: business day: page {out.pages}: totals differ from page 1's")
            out.totals = totals
            # The day's count bounds the pages it needs (a page may repeat one at its boundary: one more).
            max_pages = min(max_pages, totals.count // limit + 2)
        for n, e in enumerate(entries):
            where_ = f"page {out.pages} items[{n}]"
            if _day_of(e.captured_at, tz) != day:
                raise BadAnswer(f"billing server: business day: {where_}.captured_at {e.captured_at[:40]!r}"
                                f" is not on {day}")
            first = seen.get(e.payment_id)
            if first is None:
                seen[e.payment_id] = e
                out.entries.append(e)
            elif first != e:  # a page boundary may repeat one, identical; other content is not ours to pick
                raise BadAnswer(f"billing server: business day: {where_}.payment_id {e.payment_id[:64]!r}"
                                " repeated with other content")
        if len(out.entries) > max_records:
            raise BadAnswer(f"billing server: business day: more than {max_records} payments in a day")
        if nxt is None:
            _check_totals(out)
            return out
        if nxt == cursor or nxt in cursors:
            raise BadAnswer("billing server: business day: next_cursor goes back to a page already read")
        if out.pages >= max_pages:
            raise BadAnswer(f"billing server: business day: more than {max_pages} pages")
        cursors.add(nxt)
        cursor = nxt

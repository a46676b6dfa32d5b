"""The day's close: the journal's day against the server's business day and the TPE's totals, kept and exported.

    report = close_day(config, journal, client, day=date(2026, 11, 30),
                       tpe=TpeTotals(12, {"DZD": 4_512_300}, entered_by="s0001"))
    report.kinds                        # {'matched': 40, 'queued': 2, 'server_only': 1, ...}
    with DayCloseStore.open(config.state.dir) as store:
        run_id = store.save(report)     # every run kept; run it again later, offline or not
    to_csv(report.to_dict()); to_json(report.to_dict())

Modules: `reconcile` (pure: one line per payment, totals), `server` (the server's day, paged and bounded),
`store` (the runs, `dayclose.db`), `export` (CSV, JSON, text), `checks` (the agency's zone). The day is the
agency's local date of `captured_at` (the server's definition), in `[terminal] timezone` (checks.agency_zone;
the machine's zone when unset) unless `tz` is given. The server side has one deadline (`budget` seconds).
"""

from __future__ import annotations

import time as _time
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from agent import clock
from agent.billing import BillingClient
from agent.dayclose.checks import agency_zone
from agent.dayclose.export import to_csv, to_json, to_text
from agent.dayclose.reconcile import (
    KINDS,
    PROBLEMS,
    DayClose,
    Entry,
    Line,
    Totals,
    TpeTotals,
    reconcile,
)
from agent.dayclose.server import BUDGET, ServerDay, fetch_business_day, record_entry
from agent.dayclose.store import DayCloseStore
from agent.errors import GuichetError
from drivers.pan import safe_text

__all__ = [
    "KINDS",
    "PROBLEMS",
    "DayClose",
    "DayCloseStore",
    "Entry",
    "Line",
    "ServerDay",
    "Totals",
    "TpeTotals",
    "agency_zone",
    "close_day",
    "fetch_business_day",
    "journal_entry",
    "reconcile",
    "to_csv",
    "to_json",
    "to_text",
]

# Uploaded payments of the day absent from the server's list that are looked up one by one (the day
# boundary); beyond it they stay `missing_on_server` and the close says how many were not looked up.
MAX_LOOKUPS = 50


class _JournalLike(Protocol):
    def list(self, states: Any = None, limit: Any = None, since: Any = None) -> Any: ...
    def get(self, payment_id: str) -> Any: ...


def journal_entry(p: Any) -> Entry:
    """A journal Payment as a reconcile Entry (`stamp_duty` 0 until the journal carries it)."""
    state = p.state
    return Entry(
        payment_id=p.payment_id,
        transaction_id=p.transaction_id,
        bill_reference=p.bill_reference,
        amount=p.amount,
        currency=p.currency,
        stamp_duty=int(getattr(p, "stamp_duty", 0) or 0),
        method=p.method,
        receipt_number=p.receipt_number,
        captured_at=p.captured_at,
        cashier_id=p.cashier_id,
        state=str(getattr(state, "value", state)),
    )


def day_of(captured_at: str, tz: tzinfo | None = None) -> str:
    """The business day of a stored time: its date in the agency's zone.

    >>> from datetime import timezone, timedelta
    >>> day_of("2026-11-30T23:30:00+00:00", timezone(timedelta(hours=1)))
    '2026-12-01'
    """
    return clock.parse(captured_at).astimezone(tz).date().isoformat()


def journal_day(journal: _JournalLike, day: date, tz: tzinfo | None = None) -> list[Entry]:
    """The journal's payments captured on `day` (agency time), oldest first."""
    start = datetime.combine(day, time(0), tzinfo=tz) if tz else datetime.combine(day, time(0)).astimezone()
    # By creation time, from a day early (any RFC 3339 text: the journal reads it as an instant), then
    # filtered exactly here on the capture's day.
    loose = (start - timedelta(days=1)).isoformat()
    wanted = day.isoformat()
    out = [journal_entry(p) for p in journal.list(since=loose) if day_of(p.captured_at, tz) == wanted]
    out.reverse()
    return out


def close_day(
    config: Any,
    journal: _JournalLike,
    client: BillingClient | None,
    *,
    day: date | None = None,
    tpe: TpeTotals | None = None,
    tz: tzinfo | None = None,
    budget: float = BUDGET,
) -> DayClose:
    """Reconcile `day` (today by default) in the agency's zone (`tz`, else `[terminal] timezone`, else the
    machine's). `client` None, or a server that cannot be read whole within `budget` seconds, gives an
    offline close that says what it could not check; it never raises for the server's sake."""
    tz = tz if tz is not None else agency_zone(config)
    day = day or datetime.now(tz).date()
    terminal_id = config.terminal.id
    ours = journal_day(journal, day, tz)
    unchecked: list[str] = []
    server: list[Entry] | None = None
    server_totals: dict[str, Any] | None = None
    elsewhere: dict[str, Entry] = {}
    server_elsewhere: dict[str, Entry] = {}
    deadline = _time.monotonic() + budget
    if client is not None:
        try:
            got = fetch_business_day(client, terminal_id, day.isoformat(), tz=tz, deadline=deadline)
            server = got.entries
            if got.totals is None:
                unchecked.append("the server's totals of the day: its answer had none")
            else:
                server_totals = got.totals.model_dump()
        except GuichetError as e:
            unchecked.append(f"the server's business day could not be read: {safe_text(e, 300)}")
    if server is not None and client is not None:
        mine = {e.payment_id for e in ours}
        for s in server:
            if s.payment_id in mine:
                continue
            try:
                elsewhere[s.payment_id] = journal_entry(journal.get(s.payment_id))
            except KeyError:
                pass  # absent from this journal: server_only
        listed = {s.payment_id for s in server}
        missing = [e for e in ours if e.payment_id not in listed and e.state == "uploaded"]
        looked = 0
        for m in missing[:MAX_LOOKUPS]:
            if _time.monotonic() >= deadline:
                break
            looked += 1
            try:
                record = client.get_payment(m.payment_id)
                if record is not None:
                    server_elsewhere[m.payment_id] = record_entry(record, payment_id=m.payment_id,
                                                                  terminal_id=terminal_id)
            except GuichetError as err:
                unchecked.append(f"payment {m.receipt_number}: the server's record: {safe_text(err, 200)}")
        if len(missing) > looked:
            unchecked.append(f"{len(missing) - looked} uploaded payments absent from the server's day were"
                             " not looked up one by one")
    return reconcile(
        ours,
        server,
        terminal_id=terminal_id,
        day=day.isoformat(),
        elsewhere=elsewhere,
        server_elsewhere=server_elsewhere,
        tpe=tpe,
        run_at=clock.utc_text(clock.utc_now()),
        unchecked=unchecked,
        server_totals=server_totals,
    )


def problems_of(lines: Iterable[Line]) -> list[Line]:
    return [line for line in lines if line.kind in PROBLEMS]

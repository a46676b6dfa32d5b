"""The day's close, pure: the journal's day against the server's business day and the TPE's totals.

No I/O here: the caller (agent.dayclose.close_day) reads the journal and pages the server, and this module
puts each payment in exactly one line and adds up the totals. Amounts are integers in minor units.

>>> j = [Entry("p1", "t1", "B1", 1000, "DZD", 0, "cash", "R-1", "2026-11-30T10:00:00+01:00", "c1", "uploaded")]
>>> s = [Entry("p1", "t1", "B1", 1000, "DZD", 0, "cash", "R-1", "2026-11-30T10:00:00+01:00")]
>>> [line.kind for line in reconcile(j, s, terminal_id="T", day="2026-11-30").lines]
['matched']
>>> [line.kind for line in reconcile([], s, terminal_id="T", day="2026-11-30").lines]
['server_only']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.states import IN_DOUBT, TAKEN, State

# One kind per line. The first six are the issue's; `missing_on_server` (uploaded here, absent there) and
# `not_checked` (offline: uploaded here, the server could not be asked) complete them; `not_taken` is a
# declined or cancelled payment (no money, listed so every journal payment of the day has its line).
MATCHED = "matched"
QUEUED = "queued"
UNKNOWN = "unknown"
REJECTED = "rejected"
DIFFERENT = "different"
SERVER_ONLY = "server_only"
MISSING_ON_SERVER = "missing_on_server"
NOT_CHECKED = "not_checked"
NOT_TAKEN = "not_taken"
KINDS = (MATCHED, QUEUED, UNKNOWN, REJECTED, DIFFERENT, SERVER_ONLY, MISSING_ON_SERVER, NOT_CHECKED, NOT_TAKEN)
# The lines a supervisor must act on (or sign off).
PROBLEMS = frozenset({UNKNOWN, REJECTED, DIFFERENT, SERVER_ONLY, MISSING_ON_SERVER})
_TAKEN = frozenset(s.value for s in TAKEN)
_IN_DOUBT = frozenset(s.value for s in IN_DOUBT)


@dataclass(frozen=True)
class Entry:
    """One payment as one side holds it. `cashier_id` and `state` are the journal's (empty on the server's)."""

    payment_id: str
    transaction_id: str
    bill_reference: str
    amount: int
    currency: str
    stamp_duty: int
    method: str
    receipt_number: str
    captured_at: str
    cashier_id: str = ""
    state: str = ""


@dataclass(frozen=True)
class Line:
    """One payment's verdict. `amount`/`stamp_duty` are the journal's when it holds the payment, else the
    server's; `server_amount`/`server_stamp_duty`/`server_bill` are the server's when it holds it."""

    kind: str
    payment_id: str
    receipt_number: str
    bill_reference: str
    method: str
    cashier_id: str
    currency: str
    amount: int
    stamp_duty: int
    state: str
    server_amount: int | None = None
    server_stamp_duty: int | None = None
    server_bill: str | None = None
    detail: str = ""


@dataclass
class Totals:
    """A count, the amounts and the stamp duty (kept apart) per currency, minor units."""

    count: int = 0
    amount: dict[str, int] = field(default_factory=dict)
    stamp_duty: dict[str, int] = field(default_factory=dict)

    def add(self, amount: int, currency: str, stamp_duty: int = 0) -> None:
        self.count += 1
        self.amount[currency] = self.amount.get(currency, 0) + amount
        if stamp_duty:
            self.stamp_duty[currency] = self.stamp_duty.get(currency, 0) + stamp_duty


@dataclass(frozen=True)
class TpeTotals:
    """The TPE's card totals for the day: typed from its end-of-day ticket (`source="ticket"`, Concert E+
    has no totals request) or asked of the terminal where the protocol allows (`source="terminal"`)."""

    count: int
    amount: Mapping[str, int]
    source: str = "ticket"
    entered_by: str = ""


@dataclass
class DayClose:
    """A close: every line, the totals of both sides, the TPE's comparison, and what could not be checked."""

    terminal_id: str
    day: str
    run_at: str = ""
    online: bool = True
    lines: list[Line] = field(default_factory=list)
    journal: Totals = field(default_factory=Totals)
    by_method: dict[str, Totals] = field(default_factory=dict)
    by_cashier: dict[str, Totals] = field(default_factory=dict)
    server: Totals = field(default_factory=Totals)
    server_by_method: dict[str, Totals] = field(default_factory=dict)
    server_totals: dict[str, Any] | None = None  # the server's own totals of the day, as checked
    # The journal's money taken against the server's, when online: {"agrees", "count", "difference"}.
    totals_check: dict[str, Any] | None = None
    tpe: dict[str, Any] | None = None
    unchecked: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for line in self.lines if line.kind == kind)

    @property
    def kinds(self) -> dict[str, int]:
        return {k: self.count(k) for k in KINDS if self.count(k)}

    @property
    def problems(self) -> int:
        bad = sum(1 for line in self.lines if line.kind in PROBLEMS)
        bad += 1 if self.totals_check is not None and not self.totals_check["agrees"] else 0
        return bad + (1 if self.tpe is not None and not self.tpe["agrees"] else 0)

    @property
    def clean(self) -> bool:
        """Nothing to act on and nothing left unchecked."""
        return not self.problems and not self.unchecked

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kinds"] = self.kinds
        data["problems"] = self.problems
        data["clean"] = self.clean
        return data


def _line(kind: str, j: Entry | None, s: Entry | None, detail: str = "") -> Line:
    base = j or s
    assert base is not None
    return Line(
        kind=kind,
        payment_id=base.payment_id,
        receipt_number=base.receipt_number,
        bill_reference=base.bill_reference,
        method=base.method,
        cashier_id=j.cashier_id if j else "",
        currency=base.currency,
        amount=base.amount,
        stamp_duty=base.stamp_duty,
        state=j.state if j else "",
        server_amount=s.amount if s else None,
        server_stamp_duty=s.stamp_duty if s else None,
        server_bill=s.bill_reference if s else None,
        detail=detail,
    )


def differences(j: Entry, s: Entry) -> list[str]:
    """What the server recorded differently from the journal, one phrase per field.

    >>> a = Entry("p", "t", "B1", 1000, "DZD", 0, "cash", "R", "x")
    >>> differences(a, Entry("p", "t", "B2", 1200, "DZD", 0, "cash", "R", "x"))
    ['bill B1 here, B2 on the server', 'amount 1000 here, 1200 on the server']
    """
    out = []
    if j.bill_reference != s.bill_reference:
        out.append(f"bill {j.bill_reference} here, {s.bill_reference} on the server")
    if j.amount != s.amount or j.currency != s.currency:
        out.append(f"amount {j.amount} {j.currency} here, {s.amount} {s.currency} on the server"
                   if j.currency != s.currency else f"amount {j.amount} here, {s.amount} on the server")
    if j.stamp_duty != s.stamp_duty:
        out.append(f"stamp duty {j.stamp_duty} here, {s.stamp_duty} on the server")
    if j.method != s.method:
        out.append(f"method {j.method} here, {s.method} on the server")
    if j.receipt_number and s.receipt_number and j.receipt_number != s.receipt_number:
        out.append(f"receipt {j.receipt_number} here, {s.receipt_number} on the server")
    return out


def classify(j: Entry, s: Entry | None, *, online: bool) -> Line:
    """The line of one journal payment, `s` the server's record of it (None: not on the server's day)."""
    state = j.state
    if state in _IN_DOUBT:
        return _line(UNKNOWN, j, s, "the outcome is unknown here: settle it from the TPE's ticket or the server")
    if state not in _TAKEN:
        if s is not None:  # the server holds a payment we never took: worse than any other
            return _line(DIFFERENT, j, s, f"{state} here, but recorded on the server")
        return _line(NOT_TAKEN, j, None, state)
    if s is not None:
        diff = differences(j, s)
        if diff:
            return _line(DIFFERENT, j, s, "; ".join(diff))
        if state == State.REJECTED.value:
            return _line(REJECTED, j, s, "rejected at upload, yet recorded on the server as here")
        return _line(MATCHED, j, s)
    if state == State.REJECTED.value:
        return _line(REJECTED, j, None, "the server refused the upload: the money was taken")
    if not online:
        if state == State.APPROVED.value:
            return _line(QUEUED, j, None, "waiting for upload")
        return _line(NOT_CHECKED, j, None, "uploaded; the server could not be asked")
    if state == State.APPROVED.value:
        return _line(QUEUED, j, None, "waiting for upload")
    return _line(MISSING_ON_SERVER, j, None, "uploaded, but not on the server's business day")


def reconcile(
    journal: Iterable[Entry],
    server: Sequence[Entry] | None,
    *,
    terminal_id: str,
    day: str,
    elsewhere: Mapping[str, Entry] | None = None,
    server_elsewhere: Mapping[str, Entry] | None = None,
    tpe: TpeTotals | None = None,
    run_at: str = "",
    unchecked: Iterable[str] = (),
    server_totals: Mapping[str, Any] | None = None,
) -> DayClose:
    """Each payment of the day in one line, and the totals.

    `journal`: the journal's payments captured that day; `server`: the server's business day (None: it could
    not be read, the close is offline). `elsewhere`: journal payments the server lists on this day that the
    journal holds under another date (the day boundary); `server_elsewhere`: the server's record, found by
    id, of this day's journal payments it lists on another day. `server_totals`: the server's own totals of
    the day (kept in the report). Online, the journal's money taken and the server's must agree, or it is
    one more problem (a payment still queued here counts: it is not on the server yet).
    """
    journal = list(journal)
    elsewhere = elsewhere or {}
    server_elsewhere = server_elsewhere or {}
    online = server is not None
    rep = DayClose(terminal_id=terminal_id, day=day, run_at=run_at, online=online, unchecked=list(unchecked),
                   server_totals=dict(server_totals) if server_totals is not None else None)
    by_id = {s.payment_id: s for s in server or ()}
    seen: set[str] = set()
    for j in journal:
        seen.add(j.payment_id)
        s = by_id.get(j.payment_id) or server_elsewhere.get(j.payment_id)
        line = classify(j, s, online=online)
        if s is not None and j.payment_id not in by_id and line.kind == MATCHED:
            line = _line(MATCHED, j, s, "on the server's next or previous business day")
        rep.lines.append(line)
        if j.state in _TAKEN:
            rep.journal.add(j.amount, j.currency, j.stamp_duty)
            rep.by_method.setdefault(j.method, Totals()).add(j.amount, j.currency, j.stamp_duty)
            rep.by_cashier.setdefault(j.cashier_id, Totals()).add(j.amount, j.currency, j.stamp_duty)
    for s in server or ():
        rep.server.add(s.amount, s.currency, s.stamp_duty)
        rep.server_by_method.setdefault(s.method, Totals()).add(s.amount, s.currency, s.stamp_duty)
        if s.payment_id in seen:
            continue
        other = elsewhere.get(s.payment_id)
        if other is not None:
            rep.lines.append(classify(other, s, online=True))
            continue
        rep.lines.append(_line(SERVER_ONLY, None, s, "recorded on the server, absent from this journal"))
    if not online:
        rep.unchecked.append("the server's business day: each uploaded payment and the server's totals")
    else:
        rep.totals_check = compare_totals(rep.journal, rep.server)
    rep.tpe = compare_tpe(rep, tpe, _card_transactions(journal))
    if rep.tpe is None:
        rep.unchecked.append("the TPE's totals: enter them from the TPE's end-of-day ticket")
    rep.lines.sort(key=lambda line: (line.kind not in PROBLEMS, line.kind, line.receipt_number))
    return rep


def compare_totals(journal: Totals, server: Totals) -> dict[str, Any]:
    """The journal's money taken against the server's day: count, amount and stamp duty per currency.

    >>> compare_totals(Totals(1, {"DZD": 1000}), Totals(2, {"DZD": 3000}))
    {'agrees': False, 'journal_count': 1, 'server_count': 2, 'difference': {'DZD': 2000}, 'stamp_duty_difference': {}}
    """
    def diff(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
        return {c: b.get(c, 0) - a.get(c, 0) for c in sorted(set(a) | set(b)) if b.get(c, 0) != a.get(c, 0)}

    amount = diff(journal.amount, server.amount)
    duty = diff(journal.stamp_duty, server.stamp_duty)
    return {
        "agrees": journal.count == server.count and not amount and not duty,
        "journal_count": journal.count,
        "server_count": server.count,
        "difference": amount,  # server - journal
        "stamp_duty_difference": duty,
    }


def _card_transactions(journal: Iterable[Entry]) -> int:
    # A card basket is one TPE transaction for several payments (one per bill): the TPE counts transactions.
    return len({j.transaction_id or j.payment_id for j in journal
                if j.method == "card_terminal" and j.state in _TAKEN})


def compare_tpe(rep: DayClose, tpe: TpeTotals | None, transactions: int | None = None) -> dict[str, Any] | None:
    """The TPE's card totals against the journal's `card_terminal` payments (money taken): its count against
    our distinct transactions (`transactions`; the payment count when not given)."""
    if tpe is None:
        return None
    ours = rep.by_method.get("card_terminal", Totals())
    count = ours.count if transactions is None else transactions
    currencies = sorted(set(ours.amount) | set(tpe.amount))
    difference = {c: tpe.amount.get(c, 0) - ours.amount.get(c, 0) for c in currencies}
    return {
        "source": tpe.source,
        "entered_by": tpe.entered_by,
        "count": tpe.count,
        "amount": dict(tpe.amount),
        "journal_count": count,
        "journal_payments": ours.count,
        "journal_amount": dict(ours.amount),
        "difference": {c: d for c, d in difference.items() if d},
        "agrees": tpe.count == count and not any(difference.values()),
    }

"""One payment, end to end (DESIGN.md): lookup, limits, journal, authorisation, outcome.

>>> flow = PaymentFlow(config, journal, client, cache, authorizers={"cash": CashAuthorizer()})
>>> bill = flow.lookup("410726095518")
>>> result = flow.pay([bill], method="cash", cashier_id="c0042")
>>> result.status, result.receipt_number
('approved', 'ORAN-07-G2-000001')

The journal row is written as `created`, then `authorizing`, each committed, before any device or
acquirer is asked for money; the outcome is committed with its outbox row. A crash at any point leaves
a state that `Journal.recover()` settles without guessing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agent.authorize import Authorizer, AuthOutcome, AuthRequest, NothingSent, StatusCallback
from agent.billing import BillingClient
from agent.bills import Bill, BillCache
from agent.errors import (
    BillBlocked,
    BillNotFound,
    BillNotPayable,
    GuichetError,
    InvalidAmount,
    MethodUnavailable,
    ServerUnreachable,
)
from agent.journal import Journal, NewPayment, Payment, now_precise, now_rfc3339
from agent.limits import check_offline
from agent.logs import scrub_pans
from agent.states import State
from config import Config
from config.money import format_amount

log = logging.getLogger("guichet.payments")


@dataclass
class PayResult:
    status: str  # approved | declined | cancelled | unknown
    payments: list[Payment]
    message: str = ""
    captured_offline: bool = False
    notices: list[str] = field(default_factory=list)

    @property
    def receipt_number(self) -> str:
        return self.payments[0].receipt_number if self.payments else ""

    @property
    def total(self) -> int:
        return sum(p.amount for p in self.payments)


def _ignore_status(_: str) -> None:
    return None


def _guarded(on_status: StatusCallback) -> StatusCallback:
    """A status callback that can never break a payment (a closed pipe, a UI gone away)."""

    def call(key: str) -> None:
        try:
            on_status(key)
        except Exception:  # noqa: BLE001
            log.warning("status callback failed for %r", key, exc_info=True)

    return call


class PaymentFlow:
    """The payment flow of one counter. Thread-safe as far as the journal is; one payment at a time per caller."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        client: BillingClient,
        bills: BillCache,
        authorizers: dict[str, Authorizer],
    ) -> None:
        self.config = config
        self.journal = journal
        self.client = client
        self.bills = bills
        self.authorizers = authorizers

    # -- bills -----------------------------------------------------------------------------------

    def lookup(self, reference: str) -> Bill:
        """The bill from the server, or from the cache when the server cannot be reached (bill.offline).

        The amount due is lowered by what this counter took on the bill that the copy does not show yet.
        """
        reference = reference.strip()
        if not reference or not reference.isalnum() or len(reference) > 40:
            raise BillNotFound(f"bill reference {reference!r}: expected letters and digits only")
        # Taken before asking: a payment our uploader delivers while the answer is on its way may not be in
        # it, so it still counts against the amount due (at worst we show less due, never more).
        asked_at = now_precise()
        try:
            data = self.client.get_bill(reference)
        except ServerUnreachable as e:
            cached = self.bills.get(reference)
            if cached is None:
                raise BillNotFound(
                    f"bill {reference}: the billing server cannot be reached ({e}) and the bill is not in the "
                    "offline cache"
                ) from None
            bill = cached[0]
        else:
            self.bills.store([data])  # keep the cache as fresh as what we just saw
            bill = Bill.from_api(data, source="server", fetched_at=asked_at)
        pending = self.journal.pending_against(bill.reference, bill.fetched_at)
        if pending:
            due = max(0, bill.amount_due - pending)
            bill = replace(bill, amount_due=due, status=bill.status if due else "paid")
        return bill

    def customer_bills(self, bill: Bill) -> list[Bill]:
        """The customer's other payable bills, to settle together (server first, then the cache)."""
        if not bill.customer_id:
            return []
        asked_at = now_precise()
        try:
            items = [
                Bill.from_api(b, source="server", fetched_at=asked_at)
                for b in self.client.customer_bills(bill.customer_id)
            ]
        except ServerUnreachable:
            items = self.bills.customer_bills(bill.customer_id)
        out = []
        for b in items:
            if b.reference == bill.reference:
                continue
            pending = self.journal.pending_against(b.reference, b.fetched_at)
            if pending:
                b = replace(b, amount_due=max(0, b.amount_due - pending))
            if b.payable:
                out.append(b)
        return out

    # -- paying ----------------------------------------------------------------------------------

    def check(self, bills: list[Bill], method: str, amount: int | None = None) -> list[int]:
        """Everything that must hold before a payment starts; returns the amount per bill."""
        if not bills:
            raise InvalidAmount("no bill to pay")
        if method not in self.authorizers:
            raise MethodUnavailable(f"method {method!r}: not available on this counter")
        refs = [b.reference for b in bills]
        if len(set(refs)) != len(refs):
            raise InvalidAmount("the same bill is in the basket twice")
        currency = self.config.terminal.currency
        for b in bills:
            if b.currency != currency:
                raise InvalidAmount(f"bill {b.reference}: currency {b.currency}, this counter takes {currency}")
            blocking = self.journal.blocking_payment(b.reference)
            if blocking is not None:
                raise BillBlocked(
                    f"bill {b.reference}: payment {blocking.receipt_number} has an unknown outcome; settle it first"
                )
            if not b.payable:
                raise BillNotPayable(f"bill {b.reference}: nothing to pay (status {b.status})")
        if amount is None:
            amounts = [b.amount_due for b in bills]
        else:
            if len(bills) != 1:
                raise InvalidAmount("amount: can only be given for one bill")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
                raise InvalidAmount(f"amount: {amount!r} must be a positive number of minor units")
            due = bills[0].amount_due
            if amount > due:
                raise InvalidAmount(
                    f"amount: {format_amount(amount, currency)} is more than the {format_amount(due, currency)} due"
                )
            if amount < due and not self.config.payments.allow_partial:
                raise InvalidAmount(
                    f"amount: partial payments are not allowed on this counter (due {format_amount(due, currency)})"
                )
            amounts = [amount]
        offline = any(b.offline for b in bills)
        if offline:
            if method == "card_reader":
                raise MethodUnavailable("card reader payments need the billing server; it cannot be reached")
            check_offline(self.config.offline, self.journal.queue_stats(), sum(amounts), len(bills), currency)
        return amounts

    def pay(
        self,
        bills: list[Bill],
        *,
        method: str,
        cashier_id: str,
        amount: int | None = None,
        cancel: threading.Event | None = None,
        on_status: StatusCallback | None = None,
    ) -> PayResult:
        """Take one payment for `bills` (one authorisation for their total). Raises before anything is
        written if a check fails; once written, always returns a PayResult."""
        amounts = self.check(bills, method, amount)
        cancel = cancel or threading.Event()
        on_status = on_status or _ignore_status
        offline = any(b.offline for b in bills)
        created = self.journal.create(
            [NewPayment(b.to_api(), a) for b, a in zip(bills, amounts, strict=True)],
            currency=self.config.terminal.currency,
            method=method,
            cashier_id=cashier_id,
            captured_offline=offline,
        )
        ids = [p.payment_id for p in created]
        if cancel.is_set():
            done = self.journal.transition(ids, State.CANCELLED, actor=cashier_id, detail={"reason": "cancelled"})
            return PayResult("cancelled", done, "cancelled by the cashier", offline)
        self.journal.transition(ids, State.AUTHORIZING, actor=cashier_id)
        req = AuthRequest(
            transaction_id=created[0].transaction_id,
            payment_ids=ids,
            amount=sum(amounts),
            currency=self.config.terminal.currency,
            receipt_number=created[0].receipt_number,
            online=not offline,
        )
        try:
            outcome = self.authorizers[method].authorize(req, cancel=cancel, on_status=_guarded(on_status))
        except NothingSent as e:
            outcome = AuthOutcome("cancelled", message=str(e), detail={"error": scrub_pans(str(e))[:300]})
        except Exception as e:  # noqa: BLE001
            # We cannot tell whether money moved: never guess. A person settles it from the ticket/server.
            text = scrub_pans(f"{type(e).__name__}: {e}")[:300]
            log.exception("payment %s: authorizer failed", ids[0], extra={"payment_id": ids[0]})
            outcome = AuthOutcome("unknown", message=f"the outcome is unknown ({text})", detail={"error": text})
        return self._record(ids, outcome, cashier_id, offline)

    def _record(self, ids: list[str], outcome: AuthOutcome, actor: str, offline: bool) -> PayResult:
        to = {
            "approved": State.APPROVED,
            "declined": State.DECLINED,
            "cancelled": State.CANCELLED,
            "unknown": State.UNKNOWN,
        }[outcome.status]
        authorization = None
        if to is State.APPROVED:
            authorization = {
                "code": outcome.code,
                "reference": outcome.reference,
                "approved_at": outcome.approved_at or now_rfc3339(),
            }
        detail: dict[str, Any] = dict(outcome.detail)
        if outcome.message:
            detail["message"] = outcome.message
        done = self.journal.transition(
            ids,
            to,
            actor=actor,
            card=outcome.card,
            authorization=authorization,
            error=outcome.message
            if to in (State.DECLINED, State.CANCELLED, State.UNKNOWN) and outcome.message
            else None,
            detail=detail or None,
        )
        return PayResult(outcome.status, done, outcome.message, offline)

    # -- unknown outcomes ----------------------------------------------------------------------------

    def settle_unknown(
        self, payment_id: str, *, approved: bool, actor: str, code: str | None = None, reference: str | None = None
    ) -> list[Payment]:
        """Settle an `unknown` payment from the terminal's own ticket. Settles its whole transaction."""
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN:
            raise GuichetError(f"payment {p.receipt_number}: is {p.state}, not unknown")
        ids = [q.payment_id for q in self.journal.transaction(p.transaction_id) if q.state == State.UNKNOWN]
        if approved:
            if not code or not code.strip():
                raise InvalidAmount("authorisation code: required to settle as approved (from the terminal's ticket)")
            auth = {"code": code.strip(), "reference": reference, "approved_at": now_rfc3339()}
            return self.journal.transition(
                ids, State.APPROVED, actor=actor, authorization=auth, detail={"settled_by": actor, "from": "ticket"}
            )
        return self.journal.transition(ids, State.DECLINED, actor=actor, detail={"settled_by": actor, "from": "ticket"})

    def resolve_unknown_online(self, payment_id: str, actor: str = "recovery") -> list[Payment]:
        """A card_reader payment left unknown: ask the server what the acquirer decided."""
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN or p.method != "card_reader":
            return [p]
        answer = self.client.get_authorization(p.transaction_id)
        ids = [q.payment_id for q in self.journal.transaction(p.transaction_id) if q.state == State.UNKNOWN]
        if answer is None:
            # 404: never reached the acquirer, unless the request is still on its way: only believed once
            # well past the time the server may take to relay it.
            since = (datetime.now().astimezone() - datetime.fromisoformat(p.updated_at)).total_seconds()
            grace = 2 * self.config.server.timeout + 60
            if since < grace:
                raise GuichetError(
                    f"payment {p.receipt_number}: the acquirer has no record of it yet; ask again in "
                    f"{int(grace - since) + 1} s"
                )
            return self.journal.transition(
                ids, State.DECLINED, actor=actor, error="never reached the acquirer", detail={"resolved": "404"}
            )
        if answer.get("approved") is True:
            auth = {
                "code": answer.get("code"),
                "reference": answer.get("reference"),
                "approved_at": answer.get("approved_at") or now_rfc3339(),
            }
            return self.journal.transition(ids, State.APPROVED, actor=actor, authorization=auth)
        return self.journal.transition(
            ids, State.DECLINED, actor=actor, error=f"declined ({answer.get('response_code')})"
        )


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def today_start() -> str:
    return datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).isoformat()

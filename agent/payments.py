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
import re
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
    JournalError,
    MethodUnavailable,
    ServerUnreachable,
    SettlementRefused,
    StorageError,
)
from agent.journal import Journal, NewPayment, Payment, now_precise, now_rfc3339
from agent.limits import check_offline
from agent.states import State
from agent.storage import MIN_FREE_BYTES, check_free_space
from config import Config
from config.money import format_amount
from drivers.pan import safe_detail, safe_text

log = logging.getLogger("guichet.payments")


@dataclass
class PayResult:
    status: str  # approved | declined | cancelled | unknown
    payments: list[Payment]
    message: str = ""
    captured_offline: bool = False
    notices: list[str] = field(default_factory=list)
    # False: the outcome could not be written into the journal (disk full, I/O error); it is parked in
    # journal.pending and written at the next payment or start. `message` says so; never charge again.
    journaled: bool = True

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
        self.min_free_bytes = MIN_FREE_BYTES  # free space the state dir needs before a payment starts

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
        # Storage first: nobody is asked for money unless its outcome can be written.
        self.journal.require_healthy()
        check_free_space(self.journal.path.parent, self.min_free_bytes)
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
        if self.journal.parked:  # outcomes a full disk kept out of the journal: in first, if there is room now
            try:
                self.journal.replay_pending()
            except GuichetError as e:  # still parked, listed by `guichet journal check`: no reason to refuse
                log.error("parked outcomes not replayed: %s", e)
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
            outcome = AuthOutcome("cancelled", message=str(e), detail={"error": safe_text(e)})
        except Exception as e:  # noqa: BLE001
            # We cannot tell whether money moved: never guess. A person settles it from the ticket/server.
            text = safe_text(f"{type(e).__name__}: {e}")
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
        # The one place texts from devices, drivers and servers enter the journal: scrubbed and bounded here.
        outcome = replace(
            outcome,
            message=safe_text(outcome.message),
            code=None if outcome.code is None else safe_text(outcome.code, 200),
            reference=None if outcome.reference is None else safe_text(outcome.reference, 200),
            detail=safe_detail(outcome.detail),
        )
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
        error = outcome.message if to in (State.DECLINED, State.CANCELLED, State.UNKNOWN) and outcome.message else None
        try:
            done = self.journal.transition(
                ids, to, actor=actor, card=outcome.card, authorization=authorization, error=error, detail=detail or None
            )
        except (JournalError, StorageError) as e:
            # Money may have moved: the outcome is returned and shown whatever the disk says, and kept.
            return self._unjournaled(ids, to, outcome, authorization, error, detail, actor, offline, e)
        return PayResult(outcome.status, done, outcome.message, offline)

    def _unjournaled(
        self,
        ids: list[str],
        to: State,
        outcome: AuthOutcome,
        authorization: dict[str, Any] | None,
        error: str | None,
        detail: dict[str, Any],
        actor: str,
        offline: bool,
        failure: GuichetError,
    ) -> PayResult:
        """The outcome's journal write failed: park it (journal.pending, written at the next payment or start),
        and return it with a loud message. If even parking fails, the journal keeps the payment `authorizing`,
        which the next start turns `unknown`: settled from the ticket, never charged twice."""
        try:
            self.journal.park(
                ids, to, actor=actor, card=outcome.card, authorization=authorization, error=error, detail=detail or None
            )
            kept = "kept aside, written to the journal when the disk has room"
        except GuichetError as e:
            kept = (
                f"it could NOT be kept ({e}): write down the TPE ticket and the receipt number; the payment will"
                " show as unknown, settle it from the ticket"
            )
        message = (
            f"{outcome.status.upper()}, not yet journaled: do not charge again; {kept} (journal: {failure})"
        )
        log.critical("payment %s %s", ids[0], message, extra={"payment_id": ids[0]})
        changes: dict[str, Any] = {"state": to.value}
        if outcome.card is not None:
            changes["card"] = outcome.card
        if authorization is not None:
            changes["authorization"] = authorization
        held = []
        for pid in ids:
            try:
                held.append(replace(self.journal.get(pid), **changes))
            except (GuichetError, KeyError):
                continue  # unreadable too: the message and the receipt number still go back to the caller
        return PayResult(outcome.status, held, message, offline, journaled=False)

    # -- unknown outcomes ----------------------------------------------------------------------------

    def settle_unknown(
        self,
        payment_id: str,
        *,
        approved: bool,
        actor: str,
        code: str | None = None,
        reference: str | None = None,
        scheme: str | None = None,
        pan_masked: str | None = None,
    ) -> list[Payment]:
        """Settle an `unknown` payment (its whole transaction) as a person read it, and record who and when.

        A TPE or cash payment is settled from the terminal's own ticket: approved needs the authorisation
        code and, for a card, what the ticket shows of it (scheme, last 4 digits or the masked number as
        printed); the upload then carries `settlement` (contract 1.1). A `card_reader` payment is settled
        from the server's authorization record, which wins over what the person says:

        >>> flow.settle_unknown(pid, approved=True, actor="s0001", code="123456", scheme="CIB", pan_masked="1234")
        [Payment(state='approved', card={'scheme': 'CIB', 'pan_masked': '************1234', 'pan_token': None}, ...)]

        Raises SettlementRefused (one line, never echoing a card number) when the input is malformed or the
        server contradicts it or cannot be asked; nothing is written then.
        """
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN:
            raise GuichetError(f"payment {p.receipt_number}: is {p.state}, not unknown")
        if p.method == "card_reader":
            return self._settle_from_server(p, approved=approved, actor=actor, scheme=scheme, pan_masked=pan_masked)
        settlement = {"by": actor, "from": SETTLED_FROM_TICKET, "at": now_rfc3339()}
        ids = self._unknown_ids(p)
        if not approved:
            return self.journal.transition(ids, State.DECLINED, actor=actor, detail={"settlement": settlement})
        code = ticket_code(code)
        card = None
        if p.method != "cash":
            card = self._ticket_card(p, scheme, pan_masked, required=True)
        auth = {"code": code, "reference": reference, "approved_at": settlement["at"]}
        return self.journal.transition(
            ids, State.APPROVED, actor=actor, card=card, authorization=auth, detail={"settlement": settlement}
        )

    def resolve_unknown_online(self, payment_id: str, actor: str = "recovery") -> list[Payment]:
        """A card_reader payment left unknown: settle it as the server's authorization record says
        (approved, declined, or never reached the acquirer). Raises SettlementRefused when the server cannot
        be asked or a 404 may still mean "on its way"."""
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN or p.method != "card_reader":
            return [p]
        answer = self._server_record(p)
        return self._settle_from_server(p, approved=None, actor=actor, answer=answer)

    def _unknown_ids(self, p: Payment) -> list[str]:
        return [q.payment_id for q in self.journal.transaction(p.transaction_id) if q.state == State.UNKNOWN]

    def _server_record(self, p: Payment) -> dict[str, Any] | None:
        """The acquirer's answer for `p`'s transaction, or None for a 404 old enough to be believed."""
        try:
            answer = self.client.get_authorization(p.transaction_id)
        except GuichetError as e:
            # Either way could lose money: declining what the acquirer approved leaves it taken, never credited.
            raise SettlementRefused(
                f"payment {p.receipt_number}: the billing server's authorization record decides a card reader "
                f"payment and cannot be read now ({safe_text(e, 200)}); try again when online"
            ) from None
        if answer is None:
            # 404: never reached the acquirer, unless the request is still on its way: only believed once
            # well past the time the server may take to relay it.
            since = (datetime.now().astimezone() - datetime.fromisoformat(p.updated_at)).total_seconds()
            grace = 2 * self.config.server.timeout + 60
            if since < grace:
                raise SettlementRefused(
                    f"payment {p.receipt_number}: the acquirer has no record of it yet; ask again in "
                    f"{int(grace - since) + 1} s"
                )
        return answer

    def _settle_from_server(
        self,
        p: Payment,
        *,
        approved: bool | None,
        actor: str,
        answer: dict[str, Any] | None = None,
        scheme: str | None = None,
        pan_masked: str | None = None,
    ) -> list[Payment]:
        """Settle `p`'s transaction as the server's record says; `approved` is what the person claims (None:
        just ask). A claim the record contradicts is refused: an approval the acquirer never gave would be
        credited without money, a decline of one it gave would leave money taken and never credited."""
        # Checked before anything else: a malformed entry is refused whatever the server says.
        typed = self._ticket_card(p, scheme, pan_masked, required=False) if (scheme or pan_masked) else None
        if answer is None and approved is not None:
            answer = self._server_record(p)
        settlement = {"by": actor, "from": SETTLED_FROM_SERVER, "at": now_rfc3339()}
        ids = self._unknown_ids(p)
        if answer is not None and answer.get("approved") is True:
            if approved is False:
                raise SettlementRefused(
                    f"payment {p.receipt_number}: the server's authorization record shows it approved "
                    f"(code {answer.get('code')}): the card was charged; settle it as approved"
                )
            auth = {
                "code": str(answer.get("code") or ""),
                "reference": answer.get("reference"),
                "approved_at": answer.get("approved_at") or settlement["at"],
            }
            # The card read before the crash when the journal has it; else what was typed, else only "a card".
            card = None if p.card else typed or {"scheme": "OTHER", "pan_masked": None, "pan_token": None}
            return self.journal.transition(
                ids, State.APPROVED, actor=actor, card=card, authorization=auth, detail={"settlement": settlement}
            )
        if answer is None:
            error = "never reached the acquirer"
            why = f"the server has no authorization record: it {error}"
        else:
            error = f"declined ({answer.get('response_code') or ''})"
            why = f"the server's authorization record shows it {error}"
        if approved is True:
            raise SettlementRefused(f"payment {p.receipt_number}: {why}; it cannot be settled as approved")
        return self.journal.transition(
            ids, State.DECLINED, actor=actor, error=error, detail={"settlement": settlement}
        )

    def _ticket_card(
        self, p: Payment, scheme: str | None, pan_masked: str | None, *, required: bool
    ) -> dict[str, Any] | None:
        """The `card` of a settled payment: only what the ticket shows (contract 1.1), no token."""
        known = p.card or {}
        masked = ticket_pan_masked(pan_masked) if pan_masked else known.get("pan_masked")
        if not masked and required:
            raise SettlementRefused(
                "last 4 digits: required to settle a card payment as approved (as printed on the terminal's ticket)"
            )
        from agent.terminal import scheme_for  # here: the import block above is another hand's

        rules = list(self.config.cards.schemes)
        if scheme:
            name = ticket_scheme(scheme, [str(r.name) for r in rules])
        elif known.get("scheme"):
            name = str(known["scheme"])
        elif (masked and (found := scheme_for(masked, rules)) != "OTHER") or not required:
            name = found if masked else "OTHER"
        else:
            raise SettlementRefused("scheme: required (the card scheme printed on the terminal's ticket, e.g. CIB)")
        return {"scheme": name, "pan_masked": masked, "pan_token": None}


SETTLED_FROM_TICKET = "terminal_ticket"
SETTLED_FROM_SERVER = "server"
_MASK = frozenset("*Xx#•.")
_SCHEME = re.compile(r"[A-Z][A-Z0-9_]{1,19}")
_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
_MASKED = re.compile(r"[0-9]{0,6}\*{3,}[0-9]{4}")  # the contract's PanMasked, with the last 4 digits shown


def ticket_pan_masked(text: str) -> str:
    """The masked card number to keep, from what a person typed off a ticket: its last 4 digits, or the
    masked number as printed (at most the first 6 and last 4 digits visible). A full or partly unmasked card
    number is refused, and never echoed (the error must not carry it into a log or onto a screen).

    >>> ticket_pan_masked("1234")
    '************1234'
    >>> ticket_pan_masked("628058 ** **** 1234")
    '628058******1234'
    >>> ticket_pan_masked("6280580000001234")
    Traceback (most recent call last):
    agent.errors.SettlementRefused: last 4 digits: that is a full card number; type only the last 4 digits
    """
    value = "".join(ch for ch in str(text) if ch not in " -")[:40]
    if value.isdigit():
        if len(value) == 4:
            return "*" * 12 + value
        if len(value) >= 12:
            raise SettlementRefused("last 4 digits: that is a full card number; type only the last 4 digits")
        raise SettlementRefused("last 4 digits: type the 4 digits printed at the end of the card number")
    if not value or any(not (ch.isdigit() or ch in _MASK) for ch in value):
        raise SettlementRefused("last 4 digits: only digits, or the masked card number as printed (* for hidden)")
    masked = "".join(ch if ch.isdigit() else "*" for ch in value)
    if not 12 <= len(masked) <= 19:
        raise SettlementRefused("last 4 digits: a masked card number is 12 to 19 characters long")
    if not _MASKED.fullmatch(masked):
        raise SettlementRefused(
            "last 4 digits: only the first 6 and the last 4 digits may be visible, the last 4 digits shown"
        )
    return masked


def ticket_scheme(text: str, known: list[str]) -> str:
    """A scheme name as the ticket prints it (CIB, EDAHABIA, ...): one of the config's rules or OTHER when
    the config lists some, else any short name.

    >>> ticket_scheme(" cib", ["CIB", "EDAHABIA"])
    'CIB'
    """
    name = str(text).strip().upper()[:40]
    if known and name not in {*known, "OTHER"}:
        raise SettlementRefused(f"scheme: must be one of {', '.join([*known, 'OTHER'])}")
    if not _SCHEME.fullmatch(name):
        raise SettlementRefused("scheme: 2 to 20 letters, digits or _ (e.g. CIB, EDAHABIA, VISA)")
    return name


def ticket_code(text: str | None) -> str:
    """The authorisation code as printed on the ticket: 1 to 12 letters or digits (InvalidAmount when
    missing, as this check always answered)."""
    code = (text or "").strip()
    if not code:
        raise InvalidAmount("authorisation code: required to settle as approved (from the terminal's ticket)")
    if not _CODE.fullmatch(code):
        raise SettlementRefused("authorisation code: 1 to 12 letters or digits, as printed on the ticket")
    return code


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def today_start() -> str:
    return datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0).isoformat()

"""One payment, end to end (DESIGN.md): lookup, limits, journal, authorisation, outcome.

    flow = PaymentFlow(config, journal, client, cache, authorizers={"cash": CashAuthorizer()})
    bill = flow.lookup("410726095518")
    result = flow.pay([bill], method="cash", cashier_id="c0042")
    result.status, result.receipt_number        # ('approved', 'ORAN-07-G2-000001')

The journal row is written as `created`, then `authorizing`, each committed, before any device or
acquirer is asked for money; the outcome is committed with its audit event, and an approval is in the outbox
(a view of the approved payments) from that commit on. A crash at any point leaves
a state that `Journal.recover()` settles without guessing.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from typing import Any

from agent.authorize import Authorizer, AuthOutcome, AuthRequest, NothingSent, StatusCallback
from agent.billing import BillingClient
from agent.bills import Bill, BillCache
from agent.cash import CashDue, basket_due
from agent.errors import (
    BillBlocked,
    BillNotFound,
    BillNotPayable,
    GuichetError,
    InvalidAmount,
    JournalError,
    MethodUnavailable,
    ServerUnreachable,
    SettlementRefusal,
    StorageError,
)
from agent.journal import MAX_BASKET, Journal, NewPayment, Payment, chip_fault, now_precise, now_rfc3339
from agent.limits import check_offline
from agent.states import State
from agent.storage import MIN_FREE_BYTES, check_free_space
from config import Config
from config.money import format_amount
from drivers.emv.schemes import OTHER, label_matches, scheme_for
from drivers.pan import digits_hold_pan, masked_pan_fault, safe_detail, safe_text

log = logging.getLogger("guichet.payments")

# A basket: the bills of one customer paid together, one authorisation for their total (a customer holds at
# most 10 contracts, contract 1.1).
# Whether this journal carries a payment's stamp duty (NewPayment.stamp_duty): until it does, the duty is
# still worked out and shown, and goes no further.
_JOURNAL_DUTY = "stamp_duty" in {f.name for f in dataclasses.fields(NewPayment)}


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

    @property
    def stamp_duty(self) -> int:
        """The stamp duty collected on top of `total` (cash), as the journal holds it."""
        return sum(int(getattr(p, "stamp_duty", 0) or 0) for p in self.payments)


@dataclass(frozen=True)
class ServerView:
    """What the billing server recorded for one payment of ours (`GET /v1/payments/{id}`), for the cashier
    whose customer says "your system shows my bill unpaid".

    `status`: recorded (the server holds it; `differences` lists what it holds otherwise, empty when the
    same), absent (uploaded here, unknown there), not_uploaded (still here: nothing to ask), unreachable
    (the server could not be asked: `message` says why)."""

    status: str
    message: str
    record: dict[str, Any] | None = None
    differences: tuple[str, ...] = ()


def server_view(client: BillingClient, payment: Payment) -> ServerView:
    """Ask the server about `payment` (one request, the client's bounds); never raises for the server's sake.
    `guichet queue show` and the history screen (F3, S) call it.

        view = server_view(client, journal.get(payment_id))
        view.status, view.record["recorded_at"] if view.record else None
    """
    from agent.dayclose import journal_entry
    from agent.dayclose.reconcile import differences
    from agent.dayclose.server import record_entry

    state = str(getattr(payment.state, "value", payment.state))
    if state in (State.CREATED.value, State.AUTHORIZING.value, State.UNKNOWN.value, State.DECLINED.value,
                 State.CANCELLED.value, State.APPROVED.value):
        return ServerView("not_uploaded", f"not uploaded ({state}): the server has nothing to show yet")
    try:
        record = client.get_payment(payment.payment_id)
    except GuichetError as e:
        return ServerView("unreachable", f"the billing server cannot be asked now: {safe_text(e, 200)}")
    if record is None:
        return ServerView("absent", "the billing server has no record of this payment: tell the supervisor")
    try:  # another payment's or terminal's record is no answer about ours
        theirs = record_entry(record, payment_id=payment.payment_id, terminal_id=payment.terminal_id)
    except GuichetError as e:
        return ServerView("unreachable", f"the billing server's answer is not this payment's: {safe_text(e, 200)}:"
                          " tell the supervisor")
    diff = tuple(differences(journal_entry(payment), theirs))
    message = "recorded by the billing server" + (": " + "; ".join(diff) if diff else ", as here")
    return ServerView("recorded", message, record, diff)


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
        return self._read(bill, paid=True)

    def _read(self, bill: Bill, *, paid: bool) -> Bill:
        """`bill` with the amount due lowered by what this journal took on it that the copy does not show, and
        stamped with that read (read_at, and the journal's counter as read_seq, read with the amount in one
        snapshot): pay() hands them to the journal, which refuses this copy if a payment was taken on the bill
        since. Each copy carries its own read: an older copy still held is checked against its older read.
        `paid`: a bill left with nothing due shows as paid."""
        read_at = now_precise()
        pending, seq = self.journal.read_bill(bill.reference, bill.fetched_at)
        if pending:
            due = max(0, bill.amount_due - pending)
            status = bill.status if due or not paid else "paid"
            return replace(bill, amount_due=due, status=status, read_at=read_at, read_seq=seq)
        return replace(bill, read_at=read_at, read_seq=seq)

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
            b = self._read(b, paid=False)
            if b.payable:
                out.append(b)
        return out

    # -- paying ----------------------------------------------------------------------------------

    def check(self, bills: list[Bill], method: str, amount: int | None = None) -> list[int]:
        """Everything that must hold before a payment starts; returns the amount per bill."""
        if not bills:
            raise InvalidAmount("no bill to pay")
        if len(bills) > MAX_BASKET:
            raise InvalidAmount(
                f"a basket holds at most {MAX_BASKET} bills ({len(bills)} given): pay the others in a second basket"
            )
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
        if offline:  # card_reader too: the card alone decides (TC or AAC), its TC verified at upload
            check_offline(self.config.offline, self.journal.queue_stats(), sum(amounts), len(bills), currency)
        return amounts

    def due(self, bills: list[Bill], method: str, amount: int | None = None) -> CashDue:
        """What the customer pays, shown before the payment: each bill's amount, its stamp duty
        (`[cash.stamp_duty]`, cash only), and the sum. Runs check() first, so it refuses what pay() would.

            due = flow.due([bill], "cash")
            due.subtotal, due.duty, due.total           # minor units: 345600, 3500, 349100
        """
        return basket_due(self.check(bills, method, amount), method, self.config.cash.stamp_duty)

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
        due = basket_due(amounts, method, self.config.cash.stamp_duty)
        extra: list[dict[str, Any]] = [{"stamp_duty": d or None} if _JOURNAL_DUTY else {} for d in due.duties]
        for b, x in zip(bills, extra, strict=True):
            # The read this copy's amount due comes from (lookup, customer_bills): the journal refuses it if a
            # payment was taken on the bill since. A copy never read here (read_seq None) is checked against
            # every payment this journal ever took on the bill (0): a stale copy is never paid twice.
            x["seen_at"] = b.read_at
            x["seen_seq"] = b.read_seq if b.read_seq is not None else 0
        items = [NewPayment(b.to_api(), a, **x) for b, a, x in zip(bills, amounts, extra, strict=True)]
        created = self.journal.create(
            items,
            currency=self.config.terminal.currency,
            method=method,
            cashier_id=cashier_id,
            captured_offline=offline,
        )
        ids = [p.payment_id for p in created]
        if cancel.is_set():
            done = self.journal.transition(ids, State.CANCELLED, actor=cashier_id, detail={"reason": "cancelled"})
            return PayResult("cancelled", done, "cancelled by the cashier", offline)
        try:
            self.journal.transition(ids, State.AUTHORIZING, actor=cashier_id)
        except BaseException:
            # Nobody was asked for money: a payment left `created` would block the bill ("in progress") until
            # the next start's recover(). Cancelled here if the file takes it (best effort), then raised.
            try:
                self.journal.transition(ids, State.CANCELLED, actor=cashier_id,
                                        detail={"reason": "the authorizing step could not be written"})
            except Exception as e:  # noqa: BLE001
                log.error("payment %s: left created (%s); the next start cancels it", ids[0], e)
            raise
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
        # card_reader: the chip data (uploaded as `emv`), and a reversal the authorizer could not get acknowledged
        # (queued with the outcome: agent.reversals sends it until it is, then declines the payment).
        chip, reversal = _chip_record(getattr(outcome, "chip", None), to, ids[0])
        try:
            done = self.journal.transition(
                ids, to, actor=actor, card=outcome.card, authorization=authorization, error=error,
                detail=detail or None, chip=chip, reversal=reversal,
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
            chip, reversal = _chip_record(getattr(outcome, "chip", None), to, ids[0])
            self.journal.park(
                ids, to, actor=actor, card=outcome.card, authorization=authorization, error=error,
                detail=detail or None, chip=chip, reversal=reversal,
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
        no_card_digits: bool = False,
    ) -> list[Payment]:
        """Settle an `unknown` payment (its whole transaction) as a person read it, and record who and when.

        A TPE or cash payment is settled from the terminal's own ticket: approved needs the authorisation
        code and, for a card, what the ticket shows of it (scheme, last 4 digits or the masked number as
        printed; `no_card_digits` when the ticket prints none); the upload then carries `settlement`
        (contract 1.1). A `card_reader` payment is settled from the server's authorization record, which wins
        over what the person says:

            flow.settle_unknown(pid, approved=True, actor="s0001", code="123456", scheme="CIB", pan_masked="1234")
            # -> [Payment(state='approved',
            #             card={'scheme': 'CIB', 'pan_masked': '************1234', 'pan_token': None}, ...)]

        `actor` is who settles, as the contract's Text (non-blank, at most 200 characters). Raises
        SettlementRefusal (one line, never echoing a card number; `kind` names the reason) when the input is
        malformed or the server contradicts it or cannot be asked; nothing is written then.
        """
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN:
            raise GuichetError(f"payment {p.receipt_number}: is {p.state}, not unknown")
        ticket = self._check_ticket(
            p, approved=approved, actor=actor, code=code, scheme=scheme, pan_masked=pan_masked,
            no_card_digits=no_card_digits,
        )
        if p.method == "card_reader":
            return self._settle_from_server(p, approved=approved, actor=ticket["by"], typed=ticket["card"])
        settlement = {"by": ticket["by"], "from": SETTLED_FROM_TICKET, "at": now_rfc3339()}
        ids = self._unknown_ids(p)
        if not approved:
            return self.journal.transition(ids, State.DECLINED, actor=actor, detail={"settlement": settlement})
        auth = {"code": ticket["code"], "reference": reference, "approved_at": settlement["at"]}
        return self.journal.transition(
            ids, State.APPROVED, actor=actor, card=ticket["card"], authorization=auth,
            detail={"settlement": settlement},
        )

    def check_ticket(
        self,
        payment: Payment | str,
        *,
        approved: bool,
        actor: str,
        code: str | None = None,
        scheme: str | None = None,
        pan_masked: str | None = None,
        no_card_digits: bool = False,
    ) -> dict[str, Any]:
        """What settle_unknown() would take from the ticket, checked by the same rules, nothing written:
        ``{"by": actor, "code": code or None, "card": card or None}``. The F6 screen calls it before settling,
        so the screen and the core refuse the same things (SettlementRefusal.kind, translated by the UI); it
        passes the Payment it lists (no journal read on the UI's thread).

            flow.check_ticket(pid, approved=True, actor="s0001", code="A1", scheme="cib", pan_masked="1234")
            # -> {'by': 's0001', 'code': 'A1',
            #     'card': {'scheme': 'CIB', 'pan_masked': '************1234', 'pan_token': None}}
        """
        p = payment if isinstance(payment, Payment) else self.journal.get(payment)
        return self._check_ticket(
            p, approved=approved, actor=actor, code=code, scheme=scheme,
            pan_masked=pan_masked, no_card_digits=no_card_digits,
        )

    def _check_ticket(
        self,
        p: Payment,
        *,
        approved: bool,
        actor: str,
        code: str | None,
        scheme: str | None,
        pan_masked: str | None,
        no_card_digits: bool,
    ) -> dict[str, Any]:
        by = settlement_actor(actor)
        if p.method == "card_reader":
            # The server's record decides; what was typed is checked anyway (a card number is never kept).
            typed = None
            if scheme or pan_masked or no_card_digits:
                typed = self._ticket_card(p, scheme, pan_masked, required=False, no_card_digits=no_card_digits)
            return {"by": by, "code": None, "card": typed}
        if not approved:
            return {"by": by, "code": None, "card": None}
        checked = ticket_code(code)
        card = None
        if p.method != "cash":
            card = self._ticket_card(p, scheme, pan_masked, required=True, no_card_digits=no_card_digits)
        return {"by": by, "code": checked, "card": card}

    def resolve_unknown_online(self, payment_id: str, actor: str = "recovery") -> list[Payment]:
        """A card_reader payment left unknown: settle it as the server's authorization record says
        (approved, declined, or never reached the acquirer). Raises SettlementRefusal when the server cannot
        be asked or a 404 may still mean "on its way", or `actor` is not the contract's Text."""
        p = self.journal.get(payment_id)
        if p.state != State.UNKNOWN or p.method != "card_reader":
            return [p]
        by = settlement_actor(actor)
        answer = self._server_record(p)
        return self._settle_from_server(p, approved=None, actor=by, answer=answer)

    def _unknown_ids(self, p: Payment) -> list[str]:
        return [q.payment_id for q in self.journal.transaction(p.transaction_id) if q.state == State.UNKNOWN]

    def _server_record(self, p: Payment) -> dict[str, Any] | None:
        """The acquirer's answer for `p`'s transaction, or None for a 404 old enough to be believed."""
        try:
            answer = self.client.get_authorization(p.transaction_id)
        except GuichetError as e:
            # Either way could lose money: declining what the acquirer approved leaves it taken, never credited.
            raise SettlementRefusal(
                f"payment {p.receipt_number}: the billing server's authorization record decides a card reader "
                f"payment and cannot be read now ({safe_text(e, 200)}); try again when online",
                "server_unreachable",
            ) from None
        if answer is None:
            # 404: never reached the acquirer, unless the request is still on its way: only believed once
            # well past the time the server may take to relay it.
            since = (datetime.now().astimezone() - datetime.fromisoformat(p.updated_at)).total_seconds()
            grace = 2 * self.config.server.timeout + 60
            if since < grace:
                wait = int(grace - since) + 1
                raise SettlementRefusal(
                    f"payment {p.receipt_number}: the acquirer has no record of it yet; ask again in {wait} s",
                    "server_pending", seconds=wait,
                )
        return answer

    def _settle_from_server(
        self,
        p: Payment,
        *,
        approved: bool | None,
        actor: str,
        answer: dict[str, Any] | None = None,
        typed: dict[str, Any] | None = None,
    ) -> list[Payment]:
        """Settle `p`'s transaction as the server's record says; `approved` is what the person claims (None:
        just ask), `typed` the card they read off a ticket (checked already). A claim the record contradicts is
        refused: an approval the acquirer never gave would be credited without money, a decline of one it gave
        would leave money taken and never credited."""
        if answer is None and approved is not None:
            answer = self._server_record(p)
        settlement = {"by": actor, "from": SETTLED_FROM_SERVER, "at": now_rfc3339()}
        ids = self._unknown_ids(p)
        if answer is not None and answer.get("approved") is True:
            code = safe_text(answer.get("code") or "", 200)
            if p.method == "card_reader" and approved is None:
                # The acquirer approved, but the card's last word (a TC at the second GENERATE AC) is not in the
                # journal: the approval is reversed (reason timeout, idempotent), never settled approved on the
                # record alone (recovery). A person's decision (settle_unknown) is theirs.
                try:
                    self.client.reverse_authorization(p.transaction_id, "timeout")
                except GuichetError as e:
                    raise SettlementRefusal(
                        f"payment {p.receipt_number}: the acquirer approved it but the card never completed; its "
                        f"reversal is not acknowledged ({safe_text(e, 200)}); try again when online",
                        "server_unreachable",
                    ) from None
                return self.journal.transition(
                    ids, State.DECLINED, actor=actor, error="approval reversed: the card never completed",
                    detail={"settlement": settlement, "reversal": "timeout"},
                )
            if approved is False:
                raise SettlementRefusal(
                    f"payment {p.receipt_number}: the server's authorization record shows it approved "
                    f"(code {code}): the card was charged; settle it as approved",
                    "server_approved", code=code,
                )
            auth = {
                "code": code,
                "reference": answer.get("reference"),
                # Only a time the contract takes: anything else would have the payment rejected, for good.
                "approved_at": server_time(answer.get("approved_at")) or settlement["at"],
            }
            # The card read before the crash when the journal has it; else what was typed, else only "a card".
            card = None if p.card else typed or {"scheme": OTHER, "pan_masked": None, "pan_token": None}
            return self.journal.transition(
                ids, State.APPROVED, actor=actor, card=card, authorization=auth, detail={"settlement": settlement}
            )
        if answer is None:
            error = "never reached the acquirer"
            why = f"the server has no authorization record: it {error}"
            kind, params = "server_none", {}
        else:
            response = safe_text(answer.get("response_code") or "", 16)
            error = f"declined ({response})"
            why = f"the server's authorization record shows it {error}"
            kind, params = "server_declined", {"response": response}
        if approved is True:
            raise SettlementRefusal(
                f"payment {p.receipt_number}: {why}; it cannot be settled as approved", kind, **params
            )
        return self.journal.transition(
            ids, State.DECLINED, actor=actor, error=error, detail={"settlement": settlement}
        )

    def _ticket_card(
        self,
        p: Payment,
        scheme: str | None,
        pan_masked: str | None,
        *,
        required: bool,
        no_card_digits: bool = False,
    ) -> dict[str, Any] | None:
        """The `card` of a settled payment: only what the ticket shows (contract 1.1), no token."""
        known = p.card or {}
        rules = list(self.config.cards.schemes)
        if no_card_digits:
            if pan_masked:
                raise SettlementRefusal(
                    "last 4 digits: give them, or say the ticket prints no card digits, not both", "pan_both"
                )
            masked = None
        else:
            masked = ticket_pan_masked(pan_masked) if pan_masked else known.get("pan_masked")
            if not masked and required:
                raise SettlementRefusal(
                    "last 4 digits: required to settle a card payment as approved (as printed on the terminal's "
                    "ticket; --no-card-digits when it prints none)",
                    "pan_missing",
                )
        shown = scheme_for(masked, rules) if masked else OTHER  # the BIN rules, when the first digits show
        if scheme:
            name = ticket_scheme(scheme, rules)
            if shown != OTHER and name != shown:
                raise SettlementRefusal(
                    f"scheme: {name} does not match the card number's first digits ({shown})",
                    "scheme_bin", typed=name, shown=shown,
                )
        elif known.get("scheme"):
            name = str(known["scheme"])
        elif shown != OTHER or not required:
            name = shown
        else:
            raise SettlementRefusal(
                "scheme: required (the card scheme printed on the terminal's ticket, e.g. CIB)", "scheme_missing"
            )
        return {"scheme": name, "pan_masked": masked, "pan_token": None}


SETTLED_FROM_TICKET = "terminal_ticket"
SETTLED_FROM_SERVER = "server"
_MASK = frozenset("*Xx#•.")
_SCHEME = re.compile(r"[A-Z][A-Z0-9_]{1,19}")
_CODE = re.compile(r"[A-Za-z0-9]{1,12}")
# The contract's DateTime (RFC 3339 with an offset) and Text (non-blank as ECMA-262's \S means it).
_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")
_ECMA_SPACE = frozenset("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_PAN_FAULTS = {
    "full": "that is a full card number; type only the last 4 digits",
    "chars": "only digits, or the masked card number as printed (* for hidden)",
    "length": "a masked card number is 8 to 23 characters long",
    "shown": "only the first 6 and the last 4 digits may be visible",
    "last4": "type the 4 digits printed at the end of the card number",
}


def _chip_record(found: Any, to: State, pid: str) -> tuple[dict[str, Any] | None, str | None]:
    """An outcome's chip data as the journal stores it (the safe summary and the final DE55), and the reversal
    still to send (only for an `unknown` outcome). Chip data the journal would refuse is left out, logged: the
    outcome itself must be written."""
    if found is None:
        return None, None
    chip: dict[str, Any] | None = safe_detail(found.summary(), 200) | {"de55": found.de55}
    fault = chip_fault(chip)
    if fault is not None:
        log.error("payment %s: chip data not stored: %s", pid, fault, extra={"payment_id": pid})
        chip = None
    reversal = found.reversal if to is State.UNKNOWN and found.reversal and not found.reversal_acknowledged else None
    return chip, reversal


def settlement_actor(text: object) -> str:
    """Who settles, as the upload's `settlement.by` must be (the contract's Text: 1 to 200 characters, not
    blank), one printable line and no card number; else SettlementRefusal, before anything is written: the
    server would reject the payment for good, leaving the money taken and the bill unpaid.

    >>> settlement_actor("s0001")
    's0001'
    >>> settlement_actor("   ")
    Traceback (most recent call last):
    agent.errors.SettlementRefusal: settled by: 1 to 200 printable characters, not blank (the cashier's id)
    """
    if (
        not isinstance(text, str)
        or not 1 <= len(text) <= 200
        or all(c in _ECMA_SPACE for c in text)
        or not text.isprintable()
    ):
        raise SettlementRefusal("settled by: 1 to 200 printable characters, not blank (the cashier's id)", "actor")
    if digits_hold_pan(text):
        raise SettlementRefusal("settled by: that holds a card number; give the cashier's id", "actor")
    return text


def server_time(value: object) -> str | None:
    """`value` when it is an RFC 3339 time with an offset (the contract's DateTime), else None.

    >>> server_time("2026-11-30T10:00:00+01:00"), server_time("2026-11-30 10:00"), server_time("2026-13-01T00:00:00Z")
    ('2026-11-30T10:00:00+01:00', None, None)
    """
    if not isinstance(value, str) or not _DATETIME.fullmatch(value):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def ticket_pan_masked(text: str) -> str:
    """The masked card number to keep, from what a person typed off a ticket: its last 4 digits, or the
    masked number as printed (drivers.pan.masked_pan_fault, the contract's PanMasked, last 4 digits shown).
    A full or partly unmasked card number is refused, and never echoed (the error must not carry it into a
    log or onto a screen).

    >>> ticket_pan_masked("1234")
    '************1234'
    >>> ticket_pan_masked("628058 ** **** 1234")
    '628058******1234'
    >>> ticket_pan_masked("6280580000001234")
    Traceback (most recent call last):
    agent.errors.SettlementRefusal: last 4 digits: that is a full card number; type only the last 4 digits
    """
    value = "".join(ch for ch in str(text)[:64] if ch not in " -")
    if value.isdigit() and len(value) == 4:
        return "*" * 12 + value
    masked = "".join("*" if ch in _MASK else ch for ch in value)
    fault = masked_pan_fault(masked, last4=True)
    if fault is None:
        return masked
    if fault != "full" and value.isdigit():
        fault = "last4"  # a few digits, not 4
    raise SettlementRefusal(f"last 4 digits: {_PAN_FAULTS[fault]}", f"pan_{fault}")


def ticket_scheme(text: str, rules: list[Any]) -> str:
    """A scheme name as the ticket prints it: a rule's name (CIB, EDAHABIA, ...), or a label the rule
    matches (as drivers.emv.schemes.detect_scheme does, "Visa Debit" for a rule labelled VISA), or OTHER;
    any short name when the config lists no rules.

    >>> from config.schema import SchemeRule
    >>> ticket_scheme(" cib", [SchemeRule(name="CIB"), SchemeRule(name="VISA", labels=["visa"])])
    'CIB'
    >>> ticket_scheme("Visa Debit", [SchemeRule(name="CIB"), SchemeRule(name="VISA", labels=["visa"])])
    'VISA'
    """
    typed = str(text).strip()[:40]
    name = typed.upper()
    names = [str(r.name) for r in rules]
    if name in {*names, OTHER}:
        return name
    for rule in rules:
        if any(label_matches(str(lab), typed) for lab in rule.labels):
            return str(rule.name)
    if names:
        allowed = ", ".join([*names, OTHER])
        raise SettlementRefusal(f"scheme: must be one of {allowed}", "scheme_unknown", names=allowed)
    if not _SCHEME.fullmatch(name):
        raise SettlementRefusal("scheme: 2 to 20 letters, digits or _ (e.g. CIB, EDAHABIA, VISA)", "scheme_chars")
    return name


def ticket_code(text: str | None) -> str:
    """The authorisation code as printed on the ticket: 1 to 12 letters or digits (InvalidAmount when
    missing, as this check always answered)."""
    code = (text or "").strip()
    if not code:
        raise InvalidAmount("authorisation code: required to settle as approved (from the terminal's ticket)")
    if not _CODE.fullmatch(code):
        raise SettlementRefusal("authorisation code: 1 to 12 letters or digits, as printed on the ticket", "code")
    return code


def today_start(today: date | None = None) -> str:
    """Local midnight of `today` (default: today), with the offset in force at midnight, not now's (a DST
    day starts at another offset than it ends with): what `Journal.list(since=)` takes for today's history."""
    return datetime.combine(today or date.today(), time(0)).astimezone().isoformat()

"""The `card_reader` method: an EMV transaction on a PC/SC reader (drivers.emv.kernel), online through the
billing server's acquirer.

    flow = PaymentFlow(config, journal, client, cache, {"card_reader": ReaderAuthorizer(config, client)})

Steps: wait for the card; the kernel reads it, authenticates it offline (SDA/DDA/CDA), verifies the cardholder
(PIN on the reader's own PIN pad, signature, no CVM), runs risk management and action analysis and asks the card
for its first cryptogram. An ARQC goes to ``POST /v1/authorizations`` with the chip data (``emv``, DE55, never
5A/57/9F1F) and the full PAN, which exists only inside ``card.pan_in_memory()`` while the body is sent. The
answer's 91/8A/71/72 go back to the card (EXTERNAL AUTHENTICATE, scripts, second GENERATE AC).

Outcomes: TC after an approval: approved. An AAC at the second GENERATE AC after an approval, or the card
removed before completion: a reversal is sent once (``POST /v1/authorizations/{id}/reversal``); acknowledged
(or "no approval" after an answer came back): declined; not acknowledged: unknown, and the reversal
waits in the journal's queue (agent.reversals retries it until acknowledged, then declines the payment). No
answer at all: the card gets an AAC, a reversal ``timeout`` is sent, and the payment is unknown unless the
server acknowledges it. An AAC at the first GENERATE AC: declined
by the card (Z1). Server unreachable before anything was sent: the card decides with the default action codes,
and only a TC inside the scheme's floor limit and the agent's offline limits is approved (Y3); otherwise
declined (Z3).

Nothing leaves the agent before the first cryptogram: every failure up to then is final, never `unknown`.
The chip data of the outcome (TVR, TSI, CVM results, each cryptogram's type, DE55 of the final cryptogram) is
``outcome.chip`` (a :class:`ChipOutcome`); ``outcome.detail["emv"]`` keeps the safe summary the journal records.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.authorize import AuthOutcome, AuthRequest, StatusCallback
from agent.billing import BillingClient
from agent.cards import COUNTRY_OF_CURRENCY, CardReadError, _describe
from agent.cards import _session_lock as session_lock
from agent.crashpoints import crashpoint
from agent.errors import ApiError, GuichetError, ServerUnreachable
from config import Config
from config.money import currency as currency_info
from config.schema import SchemeRule
from drivers import pcsc
from drivers.emv import EmvError, EmvReader, ReadCancelled, ReadTimeout, Terminal
from drivers.emv import tlv as T
from drivers.emv.action import ActionCodes
from drivers.emv.card import CardData
from drivers.emv.kernel import InsertCard, IssuerAnswer, Kernel, KernelParams, TransactionResult
from drivers.emv.oda import RsaKey
from drivers.emv.pinpad import PcscControl, PinPad
from drivers.emv.risk import RandomSelection
from drivers.emv.tvr import ttq
from drivers.pan import safe_text

log = logging.getLogger("agent.reader")  # the name its log lines have always carried (journalctl filters)

REPLAYS = 1  # after a lost answer, the same request once more (same Idempotency-Key)
DEFAULT_RULE = SchemeRule(name="OTHER")


@dataclass
class ChipOutcome:
    """What the chip said, for the journal (contract 1.1 upload) and disputes: no PAN, no track data, no PIN."""

    entry_mode: str
    result: TransactionResult | None = None
    reversal: str | None = None  # the reason sent, when one was sent
    reversal_acknowledged: bool | None = None

    def summary(self) -> dict[str, Any]:
        r = self.result
        out: dict[str, Any] = {"entry_mode": self.entry_mode}
        if r is not None:
            out.update({"oda": r.oda, "oda_ok": r.oda_ok, "cvm": r.cvm, "cvm_results": r.cvm_results, "tvr": r.tvr,
                        "tsi": r.tsi, "cryptograms": r.cryptograms, "response_code": r.response_code,
                        "issuer_authenticated": r.issuer_authenticated, "scripts": r.scripts,
                        "signature_required": r.signature_required, "offline_balance": r.offline_balance})
            if r.oda_error:  # why offline data authentication failed (no card data): for disputes and support
                out["oda_error"] = r.oda_error
        out["reversal_sent"] = self.reversal is not None
        if self.reversal is not None:
            out["reversal_reason"] = self.reversal
            out["reversal_acknowledged"] = self.reversal_acknowledged
        return out

    @property
    def de55(self) -> str:
        return self.result.de55 if self.result is not None else ""


@dataclass
class CardOutcome(AuthOutcome):
    chip: ChipOutcome | None = field(default=None)


def scheme_rule(config: Config, card: CardData) -> SchemeRule:
    for rule in config.cards.schemes:
        if rule.name == card.scheme:
            return rule
    return DEFAULT_RULE


def ca_lookup(config: Config) -> Callable[[str, int], RsaKey | None]:
    def find(rid: str, index: int) -> RsaKey | None:
        key = config.emv.ca_key(rid, index)
        return RsaKey.from_hex(key.modulus, key.exponent) if key else None

    return find


def emv_terminal(config: Config, amount: int, *, offline_ok: bool = False) -> Terminal:
    """The terminal data the card sees (PDOL, CDOLs): config [emv] and the terminal's currency. `offline_ok`: the
    agent would take an offline approval of `amount` (ReaderAuthorizer._offline_ok); then the TTQ sent to the
    selected application (``Terminal.ttq_for``: its scheme rule, once the AID is chosen) lets a tapped card approve
    offline (TC with fDDA) below that scheme's contactless floor limit, never when the rule says 0."""
    code = config.terminal.currency
    country = config.emv.country or COUNTRY_OF_CURRENCY.get(code, "000")
    # An application no rule names: online cryptogram required, a CVM from the lowest contactless CVM limit.
    cvm_limits = [r.cl_cvm_limit for r in config.cards.schemes if r.cl_cvm_limit]
    return Terminal(country=country, currency=currency_info(code).numeric, amount=amount,
                    ttq=ttq(amount, min(cvm_limits, default=0)), offline_ok=offline_ok,
                    terminal_type=int(config.emv.terminal_type, 16),
                    capabilities=bytes.fromhex(config.emv.capabilities),
                    additional_capabilities=bytes.fromhex(config.emv.additional_capabilities))


def pin_pad_for(config: Config, conn: Any) -> PinPad | None:
    """The reader's PIN pad per ``emv.pin_pad``: off = never; auto/on = when the reader lists the feature."""
    if config.emv.pin_pad == "off":
        return None
    pad = PinPad.detect(PcscControl(conn))
    if pad is None and config.emv.pin_pad == "on":
        log.warning("emv.pin_pad is on but the reader %r lists no FEATURE_VERIFY_PIN_DIRECT", conn.reader)
    return pad


class ReaderAuthorizer:
    method = "card_reader"

    def __init__(self, config: Config, client: BillingClient, *,
                 offline_allowed: Callable[[int], bool] | None = None,
                 pin_pad: Callable[[Any], PinPad | None] | None = None) -> None:
        self.config = config
        self.client = client
        # Whether the agent's offline limits take one more payment of this amount (the flow's check_offline);
        # None: no offline approval after a failed online attempt.
        self.offline_allowed = offline_allowed
        self.pin_pad = pin_pad  # tests: a PC/SC control double around the connection
        # The customer's choice among the card's applications (Book 3 12.4): given the candidates, an index or
        # None. Unset, an application asking for confirmation is never selected (the UI's chooser sets it).
        self.choose: Callable[[list[Any]], int | None] | None = None

    # ------------------------------------------------------------------ the transaction

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        key = self.config.cards.hmac_key.get_secret_value()
        if not key:
            return AuthOutcome("cancelled", message="cards.hmac_key is not set: run `guichet config init` or set it",
                               detail={"reason": "card_read", "error": "ConfigError"})
        on_status("insert_card")
        wanted = self.config.cards.reader
        limit = self.config.cards.read_timeout
        try:
            name, atr = pcsc.wait_for_card(wanted, limit, cancel)
        except pcsc.Timeout:
            return AuthOutcome("cancelled", message="no card was presented in time")
        except pcsc.Cancelled:
            return AuthOutcome("cancelled", message="cancelled by the cashier")
        except pcsc.PcscError as e:
            return AuthOutcome("cancelled", message=safe_text(_describe(e), 300),
                               detail={"reason": "card_read", "error": type(e).__name__})
        if cancel.is_set():
            return AuthOutcome("cancelled", message="cancelled by the cashier")
        entry = pcsc.detect_interface(name, atr)
        chip = ChipOutcome("contactless" if entry == "contactless" else "chip")
        kernel: Kernel | None = None
        try:
            with session_lock, pcsc.connect(name) as conn:
                reader = EmvReader(conn, schemes=self.config.cards.schemes, aids=self.config.cards.aids,
                                   terminal=emv_terminal(self.config, req.amount, offline_ok=self._offline_ok(req)),
                                   hmac_key=key, cancel=cancel,
                                   deadline=time.monotonic() + self.config.cards.read_timeout,
                                   choose=self.choose)
                pad = self.pin_pad(conn) if self.pin_pad is not None else pin_pad_for(self.config, conn)
                kernel = Kernel(reader, lambda card: self._params(req, card), pin_pad=pad, on_stage=on_status)
                return self._transaction(req, kernel, chip, cancel, on_status)
        except Exception as e:  # noqa: BLE001 - nothing has left the agent (the online step catches its own)
            return self._failed(e, kernel, chip)
        finally:
            if kernel is not None and kernel.card is not None:
                kernel.card.wipe()
            on_status("remove_card")

    def run_kernel(self, req: AuthRequest, kernel: Kernel, chip: ChipOutcome, cancel: threading.Event,
                   on_status: StatusCallback) -> AuthOutcome:
        """The transaction on a kernel built by the caller (tests, bench: a virtual card as the transport), with
        the same outcome for each failure as :meth:`authorize`."""
        try:
            return self._transaction(req, kernel, chip, cancel, on_status)
        except Exception as e:  # noqa: BLE001 - as authorize
            return self._failed(e, kernel, chip)
        finally:
            if kernel.card is not None:
                kernel.card.wipe()

    def _failed(self, e: Exception, kernel: Kernel | None, chip: ChipOutcome) -> AuthOutcome:
        """What a failure before anything left the agent ends in (never unknown)."""
        try:
            raise e
        except (ReadCancelled, pcsc.Cancelled):
            return self._before_online(kernel, chip, "cancelled", "cancelled by the cashier", {})
        except InsertCard as e:
            return self._before_online(kernel, chip, "cancelled", f"{e}, then pay again; nothing was charged",
                                       {"reason": "insert_card"})
        except ReadTimeout as e:
            return self._before_online(kernel, chip, "cancelled", safe_text(str(e), 300) + "; try again",
                                       {"reason": "card_read", "error": "ReadTimeout"})
        except EmvError as e:
            return self._before_online(kernel, chip, "declined", safe_text(f"this card cannot be used: {e}", 300),
                                       {"reason": "card_unusable", "error": type(e).__name__})
        except pcsc.PcscError as e:
            return self._before_online(kernel, chip, "cancelled", safe_text(_describe(e), 300),
                                       {"reason": "card_read", "error": type(e).__name__})
        except Exception as e:  # noqa: BLE001 - nothing has left the agent (the online step catches its own)
            log.exception("card transaction failed unexpectedly before going online")
            text = safe_text(f"{type(e).__name__}: {e}", 200)
            return self._before_online(kernel, chip, "cancelled", f"the card transaction failed ({text}); nothing "
                                       "was sent", {"reason": "card_read", "error": type(e).__name__})

    def _params(self, req: AuthRequest, card: CardData) -> KernelParams:
        """The kernel's parameters for this card's scheme rule (its TACs, floor limit, 9F09) and [emv]."""
        emv = self.config.emv
        rule = scheme_rule(self.config, card)
        return KernelParams(
            tac=ActionCodes.of(tac_default=rule.tac_default, tac_denial=rule.tac_denial, tac_online=rule.tac_online),
            floor_limit=rule.floor_limit,
            random=RandomSelection(emv.random_selection_percent, emv.random_selection_max_percent,
                                   emv.random_selection_threshold),
            app_version=bytes.fromhex(rule.app_version), ca_key=ca_lookup(self.config), online_capable=req.online,
            pin_timeout=emv.pin_timeout, today=_dt.date.today, cl_limit=rule.cl_limit, cl_cvm_limit=rule.cl_cvm_limit,
            cl_floor_limit=rule.cl_floor_limit, offline_tc=self._offline_ok(req),
        )

    def _offline_ok(self, req: AuthRequest) -> bool:
        """An offline approval (TC at the first GENERATE AC) only when the server is not there (the bill came
        from the offline cache) and the agent's offline limits take this amount; else the card goes online."""
        return not req.online and self.offline_allowed is not None and self.offline_allowed(req.amount)

    def _before_online(self, kernel: Kernel | None, chip: ChipOutcome, status: str, message: str,
                       detail: dict[str, Any]) -> AuthOutcome:
        """A failure before anything left the agent: final (declined or cancelled), never unknown."""
        if kernel is not None and kernel.acs:
            chip.result = kernel.result()
        return self._out(status, chip, message=message, detail=detail)

    def _out(self, status: str, chip: ChipOutcome, **kw: Any) -> CardOutcome:
        detail = dict(kw.pop("detail", None) or {})
        detail["emv"] = chip.summary()
        return CardOutcome(status, chip=chip, detail=detail, **kw)  # type: ignore[arg-type]

    def _transaction(self, req: AuthRequest, kernel: Kernel, chip: ChipOutcome, cancel: threading.Event,
                     on_status: StatusCallback) -> AuthOutcome:
        first = kernel.start()
        card = kernel.card
        assert card is not None
        safe_card = card.payment_card()
        safe_card["entry_mode"] = chip.entry_mode
        if card.expired:
            chip.result = kernel.result()
            return self._out("declined", chip, message=f"the card expired at the end of {card.expiry}",
                             detail={"reason": "expired"})
        if kernel.outcome:  # decided by the card and the terminal alone: AAC (Z1) or TC (Y1)
            chip.result = kernel.result()
            if kernel.outcome == "approved" and not kernel.params.offline_tc:  # never asked: refused, not charged
                return self._out("declined", chip, card=safe_card, detail={"response_code": "Z3"},
                                 message="declined (Z3): an offline approval is not allowed for this amount")
            if kernel.outcome == "approved":
                # the contract's authorization.code is a string: an offline approval's is its response code
                return self._out("approved", chip, card=safe_card, code="Y1",
                                 message="approved offline by the card (Y1)", detail={"response_code": "Y1"})
            rc = kernel.response_code or "Z1"
            oda_failed = first.kind != "AAC" and rc != "Z3"  # a TC whose CDA or (a tap's) fDDA failed
            why = ("an offline approval is not allowed for this card or amount" if rc == "Z3" else
                   "the card declined it" if not oda_failed else
                   "the card could not be authenticated offline (fDDA failed): nothing is charged; pay again "
                   "when the bank can be reached, or insert the card" if kernel.oda_method == "fdda" else
                   "offline data authentication failed")
            # The method says which words the cashier gets (ui.screens.wait.decline_text): a tap's fDDA or
            # an inserted card's SDA/DDA/CDA; the reason is the kernel's own short line, no card data.
            reason = {"reason": "oda_failed", "oda": kernel.oda_method,
                      "oda_error": safe_text(kernel.oda_error, 200)} if oda_failed else {}
            return self._out("declined", chip, card=safe_card, message=f"declined: {why} ({rc})",
                             detail={"response_code": rc, **reason, **_pin_detail(kernel)})
        if cancel.is_set():
            chip.result = kernel.result()
            return self._out("cancelled", chip, message="cancelled by the cashier")
        on_status("authorising")
        try:
            return self._online(req, kernel, card, safe_card, chip, on_status)
        except Exception as e:  # noqa: BLE001 - the request may have left: never "nothing was sent"
            log.exception("card transaction failed unexpectedly after the request may have left")
            chip.result = self._card_completes(kernel, None, allow_tc=False)
            text = safe_text(f"{type(e).__name__}: {e}", 200)
            try:
                return self._reverse(req, safe_card, chip, "timeout", f"unexpected error ({text})", {})
            except Exception:  # noqa: BLE001
                log.exception("reversal after an unexpected error failed")
                return self._out("unknown", chip, card=safe_card, message=f"the outcome is unknown ({text})")

    # ------------------------------------------------------------------ online and completion

    def _online(self, req: AuthRequest, kernel: Kernel, card: CardData, safe_card: dict[str, Any],
                chip: ChipOutcome, on_status: StatusCallback) -> AuthOutcome:
        de55 = kernel.online_data().hex().upper()
        crashpoint("card_reader.before_request")  # tests: SIGKILL between the first GENERATE AC and the answer
        lost = ""
        answer: dict[str, Any] | None = None
        with card.pan_in_memory() as pan:
            body: dict[str, Any] = {
                "payment_id": req.transaction_id, "amount": req.amount, "currency": req.currency,
                "card": {"pan": pan, "expiry": card.expiry, "scheme": card.scheme, "aid": card.aid,
                         "pan_sequence": card.pan_sequence, "entry_mode": chip.entry_mode},
                "emv": de55,
            }
            try:
                for attempt in range(1 + REPLAYS):
                    try:
                        answer = self.client.authorize(body, idempotency_key=req.transaction_id)
                        break
                    except ServerUnreachable as e:
                        if not e.sent and attempt == 0:  # nothing reached the acquirer: the card decides
                            return self._unable_online(req, kernel, safe_card, chip, f"not sent: {e}")
                        lost = str(e)
                    except ApiError as e:
                        if lost:  # an earlier attempt may have reached the acquirer: its fate decides, not this
                            lost = f"{lost}; then {e}"
                            break
                        chip.result = self._card_completes(kernel, None, allow_tc=False)
                        if e.status == 409:  # this key already carries another request: its fate is unknown
                            return self._out("unknown", chip, card=safe_card, message=str(e),
                                             detail={"api_error": e.code})
                        # refused by the server before reaching the acquirer: nothing was authorised
                        return self._out("declined", chip, card=safe_card, message=str(e),
                                         detail={"api_error": e.code})
            finally:
                body["card"]["pan"] = None
        if answer is None:
            try:
                answer = self.client.get_authorization(req.transaction_id)
            except (ServerUnreachable, ApiError):
                answer = None
            if answer is None:
                return self._lost(req, kernel, safe_card, chip, lost)
        crashpoint("card_reader.before_completion")  # tests: SIGKILL between the answer and the second GENERATE AC
        return self._complete(req, kernel, safe_card, chip, answer)

    def _complete(self, req: AuthRequest, kernel: Kernel, safe_card: dict[str, Any], chip: ChipOutcome,
                  answer: dict[str, Any]) -> AuthOutcome:
        approved = answer.get("approved") is True
        code = str(answer.get("response_code", ""))
        tlvs: list[T.TLV] = []
        raw = answer.get("emv")
        if isinstance(raw, str) and raw:
            try:
                tlvs = [t for t in T.decode(bytes.fromhex(raw)) if t.tag in (0x91, 0x8A, 0x71, 0x72)]
            except (ValueError, T.TLVError) as e:
                log.warning("authorization %s: the answer's emv is not TLV (%s): completing without it",
                            req.transaction_id, e)
        issuer = IssuerAnswer(approved, code[:2] if len(code) >= 2 else code.rjust(2, "0"), tlvs)
        if kernel.reader.deadline is not None:
            # Completion has its own time: PIN entry and the acquirer's wait are not the card's to pay for.
            kernel.reader.deadline = time.monotonic() + self.config.cards.read_timeout
        try:
            result = kernel.complete(issuer)
        except (EmvError, pcsc.PcscError, GuichetError) as e:
            removed = isinstance(e, pcsc.CardRemoved | pcsc.ReaderGone)
            chip.result = kernel.result()
            if not approved:
                return self._out("declined", chip, card=safe_card, message=f"declined by the bank (code {code})",
                                 detail={"response_code": code})
            cancelled = isinstance(e, ReadCancelled)
            reason = ("card_removed" if removed else "cancelled" if cancelled else "card_declined_after_approval")
            what = ("the card was removed before the end" if removed else "cancelled by the cashier before the "
                    "card completed" if cancelled else f"the card failed to complete ({e})")
            return self._reverse(req, safe_card, chip, reason, safe_text(what, 200), answer)
        chip.result = result
        if approved and result.outcome == "approved":
            return self._out("approved", chip, card=safe_card, code=str(answer.get("code") or ""),
                             reference=answer.get("reference"), message=code, detail={"response_code": code})
        if approved:  # the issuer approved, the card refused (AAC): the approval must be undone
            why = ("the card's signature on its final cryptogram failed (CDA)"
                   if result.cryptograms[-1:] == ["TC"] and result.oda_ok is False else
                   "the card refused the bank's answer (issuer authentication failed)"
                   if result.issuer_authenticated is False or "ISSUER" in result.tvr else
                   "the card refused to complete the approved payment")
            return self._reverse(req, safe_card, chip, "card_declined_after_approval", why, answer)
        return self._out("declined", chip, card=safe_card, message=f"declined by the bank (code {code})",
                         detail={"response_code": code, **_pin_detail(kernel)})

    def _reverse(self, req: AuthRequest, safe_card: dict[str, Any], chip: ChipOutcome, reason: str, why: str,
                 answer: dict[str, Any]) -> AuthOutcome:
        """Once, now: acknowledged (or the server shows no approval) -> declined; else unknown until it is."""
        chip.reversal = reason
        try:
            reversed_ = self._send_reversal(req.transaction_id, reason)
            # A 404 ("no approval") right after a lost answer may only mean the request is still on its way
            # (as for GET /v1/authorizations/{id}: agent.payments): believed only when an answer came back.
            chip.reversal_acknowledged = reversed_ or reason != "timeout"
        except (ServerUnreachable, GuichetError) as e:
            log.warning("reversal of %s not acknowledged: %s", req.transaction_id, e)
            chip.reversal_acknowledged = False
        detail = {"response_code": str(answer.get("response_code", "")), "reversal": reason}
        if chip.reversal_acknowledged:
            return self._out("declined", chip, card=safe_card, message=f"{why}; the approval was reversed",
                             detail=detail)
        return self._out("unknown", chip, card=safe_card, detail=detail,
                         message=f"{why}; the reversal is not acknowledged yet: do not pay again")

    def _send_reversal(self, payment_id: str, reason: str) -> bool:
        return send_reversal(self.client, payment_id, reason)

    def _card_completes(self, kernel: Kernel, answer: IssuerAnswer | None, *, allow_tc: bool
                        ) -> TransactionResult:
        """The second GENERATE AC without an issuer answer; the card's last word is kept, never raised."""
        try:
            return kernel.complete(answer, allow_tc=allow_tc)
        except (EmvError, pcsc.PcscError) as e:
            log.info("second GENERATE AC without an issuer answer failed: %s", e)
        except Exception:  # noqa: BLE001 - the card's last word is a courtesy here; the outcome does not wait on it
            log.exception("second GENERATE AC without an issuer answer failed unexpectedly")
        return kernel.result()

    def _unable_online(self, req: AuthRequest, kernel: Kernel, safe_card: dict[str, Any], chip: ChipOutcome,
                       why: str) -> AuthOutcome:
        """Book 3 10.7: nothing reached the acquirer; a TC only when the default action codes and the agent's
        offline limits allow it (Y3), else AAC (Z3)."""
        allow = self.offline_allowed is not None and self.offline_allowed(req.amount)
        result = self._card_completes(kernel, None, allow_tc=allow)
        chip.result = result
        if result.outcome == "approved":
            return self._out("approved", chip, card=safe_card, code="Y3",
                             message="approved offline by the card (Y3): the bank could not be reached",
                             detail={"response_code": "Y3"})
        return self._out("declined", chip, card=safe_card, detail={"response_code": "Z3", "error": why},
                         message="declined (Z3): the bank could not be reached and an offline approval is not "
                                 "allowed for this card or amount")

    def _lost(self, req: AuthRequest, kernel: Kernel, safe_card: dict[str, Any], chip: ChipOutcome,
              error: str) -> AuthOutcome:
        """The request may have reached the acquirer and no answer came back: the card is asked for an AAC and a
        reversal is sent (reason timeout); the payment stays unknown unless the server acknowledges it."""
        chip.result = self._card_completes(kernel, None, allow_tc=False)
        return self._reverse(req, safe_card, chip, "timeout", f"no answer from the acquirer ({error})", {})


def send_reversal(client: BillingClient, payment_id: str, reason: str) -> bool:
    """POST /v1/authorizations/{id}/reversal once (contract 1.1): True when reversed, False when the server has no
    approval (404). Raises ServerUnreachable / ApiError otherwise. The retry-until-acknowledged queue
    (agent.reversals, a scheduler job) calls this same function.

    reason: card_declined_after_approval | card_removed | cancelled | timeout
    """
    return client.reverse_authorization(payment_id, reason)


def _pin_detail(kernel: Kernel) -> dict[str, Any]:
    return {"pin": kernel.pin_message} if kernel.pin_message else {}


# Kept for the callers of the reading-only era (agent.cards.read_card is still the `guichet card read` path).
__all__ = ["CardOutcome", "CardReadError", "ChipOutcome", "ReaderAuthorizer", "send_reversal"]

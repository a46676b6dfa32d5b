"""The `card_reader` method: read the card over PC/SC, then ask the acquirer through the billing server.

    flow = PaymentFlow(config, journal, client, cache, {"card_reader": ReaderAuthorizer(config, client)})

The full PAN exists only inside `card.pan_in_memory()` while the request body is built and sent
(TLS in production); the journal gets `card.payment_card()` (masked PAN and keyed token).

Nothing leaves the agent before the card is read: every failure up to then is final, never `unknown`.
A card whose own data cannot be used (malformed or oversized data, refused PDOL, too many records, no
application, expired) is `declined`; the cashier's cancel, no card in time, a card pulled out, the reader
or pcscd gone, a read past `cards.read_timeout` (a slow card and a slow reader look the same) and any
unexpected error are `cancelled`: "try again". Only once `POST /v1/authorizations` may have left can a
payment be `unknown`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agent.authorize import AuthOutcome, AuthRequest, StatusCallback
from agent.billing import BillingClient
from agent.cards import CardCancelled, CardExpired, CardReadError, CardTimeout, read_card
from agent.errors import ApiError, ServerUnreachable
from config import Config
from drivers.emv.card import CardData
from drivers.pan import safe_text

log = logging.getLogger("agent.reader")  # the name its log lines have always carried (journalctl filters)

REPLAYS = 1  # after a lost answer, the same request once more (same Idempotency-Key)


class ReaderAuthorizer:
    method = "card_reader"

    def __init__(self, config: Config, client: BillingClient) -> None:
        self.config = config
        self.client = client

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        if not req.online:
            return AuthOutcome("cancelled", message="card reader payments need the billing server")
        on_status("insert_card")
        try:
            card = read_card(
                self.config, cancel, self.config.cards.read_timeout, amount=req.amount, on_status=on_status
            )
        except CardCancelled:
            return AuthOutcome("cancelled", message="cancelled by the cashier")
        except CardTimeout:
            return AuthOutcome("cancelled", message="no card was presented in time")
        except CardExpired as e:
            return AuthOutcome("declined", message=str(e), detail={"reason": "expired"})
        except CardReadError as e:
            if e.unusable:  # the card's own answers: refused as unusable, nothing was sent
                return AuthOutcome("declined", message=str(e), detail={"reason": "card_unusable", "error": e.kind})
            return AuthOutcome("cancelled", message=str(e), detail={"reason": "card_read", "error": e.kind})
        except Exception as e:  # noqa: BLE001 - nothing has left the agent: never unknown
            log.exception("card read failed unexpectedly")
            text = safe_text(f"{type(e).__name__}: {e}", 200)
            return AuthOutcome("cancelled", message=f"the card read failed ({text}); nothing was sent",
                               detail={"reason": "card_read", "error": type(e).__name__})
        try:
            if cancel.is_set():
                return AuthOutcome("cancelled", message="cancelled by the cashier")
            on_status("authorising")
            return self._ask_acquirer(req, card)
        finally:
            card.wipe()
            on_status("remove_card")

    def _ask_acquirer(self, req: AuthRequest, card: CardData) -> AuthOutcome:
        """POST /v1/authorizations; an answer lost after sending is asked for again with the same
        Idempotency-Key (the server answers a replay with the first answer), then looked up. Never guessed."""
        safe_card = card.payment_card()
        lost = ""
        with card.pan_in_memory() as pan:
            body: dict[str, Any] = {
                "payment_id": req.transaction_id,
                "amount": req.amount,
                "currency": req.currency,
                "card": {
                    "pan": pan,
                    "expiry": card.expiry,
                    "scheme": card.scheme,
                    "aid": card.aid,
                    "pan_sequence": card.pan_sequence,
                },
                "emv": None,
            }
            try:
                for attempt in range(1 + REPLAYS):
                    try:
                        return self._outcome(self.client.authorize(body, idempotency_key=req.transaction_id), safe_card)
                    except ServerUnreachable as e:
                        if not e.sent and attempt == 0:
                            # the connection was never made: nothing reached the acquirer
                            return AuthOutcome("cancelled", card=safe_card, message=f"not sent: {e}")
                        lost = str(e)
                    except ApiError as e:
                        if e.status == 409:  # this key already carries another request: its fate is unknown
                            return AuthOutcome("unknown", card=safe_card, message=str(e), detail={"api_error": e.code})
                        # refused by the server before reaching the acquirer: nothing was authorised
                        return AuthOutcome("declined", card=safe_card, message=str(e), detail={"api_error": e.code})
            finally:
                body["card"]["pan"] = None
        return self._after_lost_answer(req, safe_card, lost)

    def _outcome(self, answer: dict[str, Any], card: dict[str, Any]) -> AuthOutcome:
        code = str(answer.get("response_code", ""))
        if answer.get("approved") is True:
            return AuthOutcome(
                "approved",
                card=card,
                code=str(answer.get("code") or ""),
                reference=answer.get("reference"),
                message=code,
                detail={"response_code": code},
            )
        return AuthOutcome(
            "declined", card=card, message=f"declined by the bank (code {code})", detail={"response_code": code}
        )

    def _after_lost_answer(self, req: AuthRequest, card: dict[str, Any], error: str) -> AuthOutcome:
        """Ask once what the acquirer decided. A 404 right after a lost answer may only mean the request is
        still on its way: it stays unknown until a person settles it from the server's record (F6 "Ask the
        server", `guichet queue settle`: PaymentFlow.resolve_unknown_online); nothing asks again by itself."""
        try:
            answer = self.client.get_authorization(req.transaction_id)
        except (ServerUnreachable, ApiError):
            answer = None
        if answer is None:
            return AuthOutcome(
                "unknown", card=card, message=f"no answer from the acquirer ({error})", detail={"error": error}
            )
        return self._outcome(answer, card)

"""The `card_reader` method: read the card over PC/SC, then ask the acquirer through the billing server.

>>> flow = PaymentFlow(config, journal, client, cache, {"card_reader": ReaderAuthorizer(config, client)})

The full PAN exists only inside `card.pan_in_memory()` while the request body is built and sent
(TLS in production); the journal gets `card.payment_card()` (masked PAN and keyed token).
"""

from __future__ import annotations

import threading
from typing import Any

from agent.authorize import AuthOutcome, AuthRequest, StatusCallback
from agent.billing import BillingClient
from agent.cards import CardCancelled, CardExpired, CardReadError, CardTimeout, read_card
from agent.errors import ApiError, ServerUnreachable
from config import Config


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
            card = read_card(self.config, cancel, self.config.cards.read_timeout, amount=req.amount,
                             on_status=on_status)
        except CardCancelled:
            return AuthOutcome("cancelled", message="cancelled by the cashier")
        except CardTimeout:
            return AuthOutcome("cancelled", message="no card was presented in time")
        except CardExpired as e:
            return AuthOutcome("declined", message=str(e), detail={"reason": "expired"})
        except CardReadError as e:
            return AuthOutcome("cancelled", message=str(e), detail={"reason": "card_read"})
        try:
            if cancel.is_set():
                return AuthOutcome("cancelled", message="cancelled by the cashier")
            on_status("authorising")
            with card.pan_in_memory() as pan:
                body: dict[str, Any] = {
                    "payment_id": req.transaction_id,
                    "amount": req.amount,
                    "currency": req.currency,
                    "card": {"pan": pan, "expiry": card.expiry, "scheme": card.scheme, "aid": card.aid,
                             "pan_sequence": card.pan_sequence},
                    "emv": None,
                }
                try:
                    answer = self.client.authorize(body, idempotency_key=req.transaction_id)
                finally:
                    body["card"]["pan"] = None
            return self._outcome(answer, card.payment_card())
        except ApiError as e:  # refused before reaching the acquirer: nothing was authorised
            return AuthOutcome("declined", card=card.payment_card(), message=str(e), detail={"api_error": e.code})
        except ServerUnreachable as e:
            # The request may have reached the acquirer. Ask once what it decided; never guess.
            return self._after_lost_answer(req, card.payment_card(), str(e))
        finally:
            card.wipe()
            on_status("remove_card")

    def _outcome(self, answer: dict[str, Any], card: dict[str, Any]) -> AuthOutcome:
        code = str(answer.get("response_code", ""))
        if answer.get("approved") is True:
            return AuthOutcome(
                "approved", card=card, code=str(answer.get("code") or ""), reference=answer.get("reference"),
                message=code, detail={"response_code": code},
            )
        return AuthOutcome("declined", card=card, message=f"declined by the bank (code {code})",
                           detail={"response_code": code})

    def _after_lost_answer(self, req: AuthRequest, card: dict[str, Any], error: str) -> AuthOutcome:
        try:
            answer = self.client.get_authorization(req.transaction_id)
        except (ServerUnreachable, ApiError):
            return AuthOutcome("unknown", card=card, message=f"no answer from the acquirer ({error})",
                               detail={"error": error})
        if answer is None:  # 404: the request never reached the acquirer
            return AuthOutcome("cancelled", card=card, message=f"not sent to the acquirer ({error})")
        return self._outcome(answer, card)

"""The ``card_terminal`` payment method: the amount goes to the TPE (Concert E+ over a serial line, or Concert
V3 / Caisse-AP over TCP when ``tpe.port`` is ``tcp://host:8888``), the customer pays there.

    auth = TpeAuthorizer(config)                 # config.tpe: port, protocol, baud, framing, timeouts
    outcome = auth.authorize(req, cancel=threading.Event(), on_status=ui.show)
    outcome.status    # approved | declined | cancelled | unknown

Mapping from the terminal's result (DESIGN.md step 4-5):
- approved with the requested amount -> approved (card: scheme from the BIN rules, masked PAN; no token,
  a TPE never gives us the PAN);
- refused (E+ status 7 with a card; V3 AE=01 with a refusal reason) -> declined;
- cancelled -> cancelled: by the cashier before the amount left us, or the terminal answered that no card
  was used (E+ status 7, empty report; V3 AE=01 AF=06/08/11, or a request it did not take);
- anything else once the request frame may have reached the terminal (no answer, line dropped, unreadable
  answer, an amount other than asked, an approval whose fields fail their checks) -> unknown: the cashier
  settles it from the TPE's ticket. Never resent.

Every text from the terminal is checked and scrubbed in the driver (``drivers.concert``); what is recorded here
is scrubbed of card numbers again (``drivers.pan.safe_text``) and bounded in length before the journal sees it.
"""

from __future__ import annotations

import threading
from typing import Any

from agent.authorize import AuthOutcome, AuthRequest, StatusCallback
from config import Config
from drivers.concert import (
    AmountError,
    Approved,
    Cancelled,
    ConcertError,
    Link,
    Refused,
    Result,
    link_from_config,
)
from drivers.emv.schemes import scheme_for
from drivers.pan import safe_text

MAX_TEXT = 300  # characters of any terminal-derived text recorded in the journal


def _safe(text: str, limit: int = MAX_TEXT) -> str:
    """What the journal may keep of a text that came from the terminal: no card number, one line, bounded."""
    return safe_text(text, limit)


class TpeAuthorizer:
    """Authorizer for ``card_terminal`` (see agent.authorize.Authorizer)."""

    method = "card_terminal"

    def __init__(self, config: Config, *, port: str | None = None) -> None:
        self.config = config
        self.port = port if port is not None else config.tpe.port

    def _link(self) -> Link:
        """E+ or V3, chosen by the port value (``tcp://``/``caisse-ap://``) and ``tpe.protocol``."""
        return link_from_config(self.config.tpe, port=self.port)

    def authorize(self, req: AuthRequest, *, cancel: threading.Event, on_status: StatusCallback) -> AuthOutcome:
        try:
            link = self._link()
            if cancel.is_set():
                return AuthOutcome("cancelled", message="cancelled by the cashier before the amount was sent")
            on_status("authorising")
            result = link.pay(req.amount, req.currency, cancel=cancel, on_event=on_status)
        except AmountError as e:
            return AuthOutcome("cancelled", message=f"not sent to the terminal: {e}", detail={"error": str(e)})
        except ConcertError as e:
            return AuthOutcome("cancelled", message=f"terminal not usable: {e}", detail={"error": str(e)})
        except Exception as e:  # noqa: BLE001 - a driver bug: we cannot tell whether the amount left us
            return AuthOutcome(
                "unknown",
                message=_safe(f"terminal driver error ({e!r}). Check the terminal's ticket before charging again."),
                detail={"error": _safe(repr(e))},
            )
        out = self.outcome(result, req)
        out.detail["protocol"] = link.protocol
        return out

    def outcome(self, result: Result, req: AuthRequest) -> AuthOutcome:
        """The journal outcome for a link result (pure: no I/O)."""
        detail: dict[str, Any] = {
            "terminal_result": result.kind,
            "amount_sent": result.amount_sent,
            "message": _safe(result.message),
            "naks_received": result.naks_received,
            "naks_sent": result.naks_sent,
            "elapsed_ms": round(result.elapsed * 1000),
        }
        stage = getattr(result, "stage", "")
        if stage:
            detail["stage"] = stage
        response = getattr(result, "response", None)
        if response is not None:
            # The terminal's answer as recorded: never the raw report (a real TPE may put the PAN there).
            detail["answer"] = {
                "status": response.status,
                "amount": response.amount,
                "currency_numeric": response.currency_numeric,
                "pos_number": response.pos_number,
                "private": _safe(response.private.strip(), 32),
                "pan_masked": response.pan_masked,
            }
            if response.reason:  # V3: AF, why the terminal did not do it
                detail["answer"]["reason"] = _safe(response.reason, 2)
            if response.problems:  # fields the driver dropped (names and lengths only)
                detail["answer"]["dropped"] = [_safe(p) for p in response.problems]
        if isinstance(result, Approved):
            r = result.response
            card = {
                "scheme": scheme_for(r.pan_masked, list(self.config.cards.schemes)),
                "pan_masked": r.pan_masked,
                "pan_token": None,
                "expiry": None,
                "aid": r.aid,
            }
            # V3: AC; E+ has no such field: terminals put it in the private data.
            return AuthOutcome(
                "approved", card=card, code=_safe(r.auth_code, 12), reference=None,
                message="approved by the terminal", detail=detail,
            )
        text = _safe(result.message)
        if isinstance(result, Refused):
            return AuthOutcome("declined", message=f"declined by the terminal: {text}", detail=detail)
        if isinstance(result, Cancelled):
            who = "on the terminal" if result.by == "terminal" else "by the cashier"
            return AuthOutcome("cancelled", message=f"cancelled {who}", detail=detail)
        if result.amount_sent:
            return AuthOutcome(
                "unknown",
                message=f"{text}. Check the terminal's ticket before charging again.",
                detail=detail,
            )
        return AuthOutcome("cancelled", message=f"amount not sent: {text}", detail=detail)

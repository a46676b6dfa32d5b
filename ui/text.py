"""What the cashier reads: amounts, states, methods, device status and errors, translated and shaped.

    money(345600, "DZD")          -> "3\u202f456,00\xa0DA" (fr; ui/formatting.py)
    state_label("unknown")        -> "issue inconnue" (fr)
    error_text(BillNotFound(...)) -> "Facture introuvable — bill 4107… not found"
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent import ages
from ui import i18n
from ui.formatting import date_text, time_text
from ui.formatting import money as money  # the screens read amounts from here with the labels
from ui.i18n import N_, _, shape, t

STATE_LABELS = {
    "created": N_("created"),
    "authorizing": N_("authorising"),
    "approved": N_("approved"),
    "uploaded": N_("uploaded"),
    "declined": N_("declined"),
    "cancelled": N_("cancelled"),
    "unknown": N_("unknown outcome"),
    "rejected": N_("rejected by the server"),
}

METHOD_LABELS = {
    "card_terminal": N_("Card on the terminal (TPE)"),
    "card_reader": N_("Card in the reader"),
    "cash": N_("Cash"),
}

WAIT_LABELS = {
    "starting": N_("Starting…"),
    "insert_card": N_("Insert or tap the card"),
    "reading_card": N_("Reading the card…"),
    "pin_on_terminal": N_("The customer types the PIN on the terminal"),
    "authorising": N_("Authorising…"),
    "remove_card": N_("Remove the card"),
    "cancelling": N_("Cancelling…"),
    "cancel_on_terminal": N_("Cancel on the terminal too (red key), then wait for its answer"),
}

DEVICE_LABELS = {
    "ready": N_("ready"),
    "card present": N_("card present"),
    "no card": N_("no card"),
    "absent": N_("absent"),
    "pcscd down": N_("PC/SC service down"),
    "configured": N_("configured"),
}

SERVICE_LABELS = {
    "water": N_("water"),
    "electricity": N_("electricity"),
    "gas": N_("gas"),
    "sanitation": N_("sanitation"),
}

BILL_STATUS_LABELS = {
    "unpaid": N_("unpaid"),
    "partially_paid": N_("partially paid"),
    "paid": N_("paid"),
    "cancelled": N_("cancelled"),
}

# Headlines for the agent's errors, by class name; the agent's own one-line detail follows.
ERROR_HEADLINES = {
    "BillNotFound": N_("Bill not found"),
    "BillNotPayable": N_("This bill cannot be paid"),
    "OfflineLimitExceeded": N_("Offline limit reached: wait for the link to come back"),
    "BillBlocked": N_("A payment of this bill has an unknown outcome: settle it first"),
    "InvalidAmount": N_("Invalid amount"),
    "MoneyError": N_("Invalid amount"),
    "MethodUnavailable": N_("Payment method unavailable"),
    "ServerUnreachable": N_("Billing server unreachable"),
    "LoginFailed": N_("Unknown cashier or wrong PIN"),
    "LockedOut": N_("Too many wrong PINs: account locked"),
    "NotSupervisor": N_("A supervisor is required"),
    "ShiftError": N_("Shift error"),
    "CashierError": N_("Refused"),
    "ApiError": N_("The billing server refused the request"),
    "RetryLater": N_("The billing server is busy: try again shortly"),
    "SettlementRefused": N_("Cannot settle it this way"),
}


# Why settling an unknown outcome was refused, by SettlementRefusal.kind (agent/payments.py): the cashier reads
# it in their language instead of the core's English line. Placeholders come from the exception's params.
SETTLE_REFUSALS = {
    "actor": N_("Who settles: this cashier id cannot be recorded"),
    "code": N_("Authorisation code: 1 to 12 letters or digits, as printed on the ticket"),
    "pan_missing": N_("Type the card's last 4 digits printed on the ticket"),
    "pan_full": N_("That is a full card number: type only the last 4 digits"),
    "pan_chars": N_("Last 4 digits: type the 4 digits, or the masked number as printed (* for hidden)"),
    "pan_length": N_("Last 4 digits: type the 4 digits, or the masked number as printed (* for hidden)"),
    "pan_last4": N_("Last 4 digits: type the 4 digits, or the masked number as printed (* for hidden)"),
    "pan_shown": N_("Only the first 6 and the last 4 digits of the card may be visible"),
    "pan_both": N_("Give the card's last 4 digits, or say the ticket prints none: not both"),
    "scheme_missing": N_("Type the card scheme printed on the ticket (e.g. CIB)"),
    "scheme_unknown": N_("Card scheme: one of {names}"),
    "scheme_chars": N_("Card scheme: 2 to 20 letters or digits (e.g. CIB)"),
    "scheme_bin": N_("Card scheme: {typed} does not match the card number's first digits ({shown})"),
    "server_unreachable": N_(
        "The billing server decides a card reader payment and cannot be reached now: try again when online"
    ),
    "server_pending": N_("The acquirer has no record of it yet: ask again in {seconds} s"),
    "server_approved": N_(
        "The server's record shows it approved (code {code}): the card was charged; settle it as approved"
    ),
    "server_declined": N_("The server's record shows it declined ({response}): it cannot be settled as approved"),
    "server_none": N_("No record of it on the server (it never reached the acquirer): it cannot be settled approved"),
}


# What the billing server says about an accepted payment it could not apply to the bill as asked.
NOTICE_LABELS = {
    "credited_to_account": N_("credited to the customer's account"),
}


def notice_label(notice: str) -> str:
    return _(NOTICE_LABELS.get(notice, notice))


def value(v: Any) -> str:
    """An enum member or a string, as its plain value."""
    return str(getattr(v, "value", v))


def state_label(state: Any) -> str:
    s = value(state)
    return _(STATE_LABELS.get(s, s))


def method_label(method: str) -> str:
    return _(METHOD_LABELS.get(method, method))


def wait_label(key: str) -> str:
    return _(WAIT_LABELS.get(key, key))


def error_text(exc: BaseException) -> str:
    """A translated headline plus the agent's precise one-line message (naming the field at fault): an
    i18n.Text, so an error a screen keeps follows a language switch (F8) like its other messages."""
    return i18n.Text(lambda: _error_text(exc))


def _error_text(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_HEADLINES:
            head = _(ERROR_HEADLINES[cls.__name__])
            break
    else:
        head = _("Error")
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind in SETTLE_REFUSALS:
        params = getattr(exc, "params", None) or {}
        try:
            return shape(f"{head} — {_(SETTLE_REFUSALS[kind]).format(**params)}")
        except (KeyError, IndexError, ValueError):  # a catalogue entry naming another placeholder
            pass
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return shape(f"{head} — {detail}")


# agent.ages's templates, marked here so that message extraction keeps them in the catalogues
AGE_TEMPLATES = (N_("{n} s"), N_("{n} min"), N_("{h} h {m:02d}"))


def age_text(seconds: float) -> str:
    """A short age in the counter's language: agent.ages's rule, with our translations."""
    return ages.age_text(seconds, tr=t)


def parse_time(ts: str | datetime | None) -> datetime | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def local_hm(ts: str | datetime | None) -> str:
    dt = parse_time(ts)
    return time_text(dt) if dt else "--:--"


def local_when(ts: str | datetime | None, seconds: bool = False) -> str:
    """A stored time (UTC or with its offset) as the local date and time: "22/11/2026 09:14" in fr."""
    dt = parse_time(ts)
    return f"{date_text(dt)} {time_text(dt, seconds)}" if dt else "-"

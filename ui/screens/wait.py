"""The live panel while the card or the terminal works: what to do now, and Escape to cancel.

The payment runs in a thread worker (`flow.pay`); its status keys arrive as messages. Cancelling sets an
event the authorizer watches: the panel stays until the flow says what really happened (cancelled,
or approved/declined/unknown if the amount had already left).

An EMV transaction on the reader (agent.authorizers.card_reader) says its stage: "enter_pin" (the customer types
the PIN on the reader's own pad), "wrong_pin", "do_not_remove" (from the first cryptogram to the end),
"remove_card". A decline comes back in words from its response code (contract 1.1), in the counter's language.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, LoadingIndicator, OptionList, Static

from ui.i18n import N_, _, shape, t
from ui.messages import PayFinished, PayStatus
from ui.plain import plain
from ui.screens.base import CounterModal
from ui.text import method_label, money, wait_label

# The kernel's stages (drivers.emv.kernel) that ui.text.WAIT_LABELS does not name.
EMV_STAGES = {
    "enter_pin": N_("Enter your PIN on the card reader"),
    "wrong_pin": N_("Wrong PIN: type it again on the card reader"),
    "do_not_remove": N_("Do not remove the card"),
    "choose_application": N_("The customer chooses the card's application (Enter)"),
}

# Contract 1.1 response codes a cashier must tell apart, and the terminal's own (Z1/Z3: EMV Book 4 A6).
DECLINE_WORDS = {
    "05": N_("the bank refused the payment (do not honour)"),
    "51": N_("insufficient funds"),
    "54": N_("the card has expired"),
    "55": N_("incorrect PIN"),
    "57": N_("this card may not be used for this payment"),
    "N7": N_("the card's cryptogram did not verify"),
    "82": N_("the card's cryptogram did not verify"),
    "91": N_("the card's bank cannot be reached; try again later"),
    "Z1": N_("the card refused the payment"),
    "Z3": N_("the bank could not be reached and the card does not allow an offline payment"),
}
REVERSED = N_("the card refused to complete the approved payment: the approval was cancelled, nothing is charged")
PIN_BLOCKED = N_("the card's PIN is blocked")
FDDA_FAILED = N_("the card could not be authenticated offline: nothing is charged; pay again when the bank can be "
                 "reached, or insert the card")
ODA_FAILED = N_("the card's chip could not be authenticated (offline data authentication failed): nothing is "
                "charged")


def stage_label(key: str) -> str:
    return _(EMV_STAGES[key]) if key in EMV_STAGES else wait_label(key)


def decline_text(detail: dict[str, Any] | None, fallback: str) -> str:
    """A card payment's decline in words: a reversal, a blocked PIN, else its response code; else the message.

    >>> decline_text({"response_code": "XY"}, "declined by the bank (code XY)")   # a code without words
    'declined by the bank (code XY)'
    >>> decline_text({"response_code": "51"}, "").endswith("(51)")     # "insufficient funds (51)" in English
    True
    >>> d = {"response_code": "Z1", "reason": "oda_failed", "oda": "fdda"}    # a tap: not "refused (Z1)"
    >>> decline_text(d, "") == _(FDDA_FAILED), decline_text(dict(d, oda="cda"), "") == _(ODA_FAILED)
    (True, True)
    """
    d = detail or {}
    if d.get("reversal"):
        return _(REVERSED)
    if "blocked" in str(d.get("pin", "")):
        return _(PIN_BLOCKED)
    if d.get("reason") == "oda_failed":  # a TC whose offline data authentication failed (Z1)
        # a tap's fDDA: the bank or the contact interface; an inserted card's SDA/DDA/CDA: its own words
        return _(FDDA_FAILED) if d.get("oda") == "fdda" else _(ODA_FAILED)
    code = str(d.get("response_code") or "")
    if code in DECLINE_WORDS:
        return f"{_(DECLINE_WORDS[code])} ({code})"
    return fallback


class WaitScreen(CounterModal):
    BINDINGS = [Binding("escape", "cancel", "Cancel", priority=True)]

    def __init__(self, bills: list[Any], method: str, amount: int | None, total: int, currency: str) -> None:
        super().__init__()
        self.bills = bills
        self.method = method
        self.amount = amount
        self.total = total
        self.currency = currency
        self.cancel_event = threading.Event()
        self.status_key = "starting"
        self.finished = False
        self._chosen = threading.Event()  # the customer's choice of application (Book 3 12.4), from the worker
        self._choice: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="wait-box", classes="box"):
            yield Static(t("Amount to pay: {amount}", amount=money(self.total, self.currency)), classes="total")
            yield Static(shape(method_label(self.method)))
            yield Static(shape(stage_label(self.status_key)), id="wait-status", classes="big")
            yield OptionList(id="app-choice")
            yield LoadingIndicator()
            yield Button(t("Cancel (Esc)"), id="cancel", variant="error")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#app-choice", OptionList).display = False
        self.pay()

    @work(thread=True, exit_on_error=False, group="pay")
    def pay(self) -> None:
        app = self.gapp
        reader = app.backend.flow.authorizers.get("card_reader") if self.method == "card_reader" else None
        if reader is not None and hasattr(reader, "choose"):
            reader.choose = self._choose_application  # this payment's card asks the customer through this panel
        try:
            with app.backend.payment_in_flight():
                result = app.backend.flow.pay(
                    self.bills,
                    method=self.method,
                    cashier_id=app.cashier.cashier_id,
                    amount=self.amount,
                    cancel=self.cancel_event,
                    on_status=lambda key: self.post_message(PayStatus(key)),
                )
            if self.method == "card_reader" and result.status == "declined" and result.payments:
                result = self._in_words(result)
        except Exception as e:
            self.post_message(PayFinished(error=e))
            return
        finally:
            if reader is not None and getattr(reader, "choose", None) == self._choose_application:
                reader.choose = None
        self.post_message(PayFinished(result))

    def _choose_application(self, candidates: list[Any]) -> int | None:
        """In the worker, called by the kernel's reader: show the card's applications (priority order) and wait
        for the customer's choice, the cashier's cancel, or the card read's own deadline."""
        labels = [c.preferred_name or c.label or c.aid.hex().upper() for c in candidates]
        self._choice = None
        self._chosen.clear()
        self.app.call_from_thread(self._show_choice, labels)
        # Bounded like the card read itself: a screen that went away never leaves the worker waiting.
        deadline = time.monotonic() + float(self.gapp.config.cards.read_timeout)
        while not self._chosen.wait(0.1):
            if self.cancel_event.is_set() or time.monotonic() > deadline or not self.is_attached:
                return None
        return self._choice

    def _show_choice(self, labels: list[str]) -> None:
        choice = self.query_one("#app-choice", OptionList)
        choice.clear_options()
        choice.add_options([plain(shape(label)) for label in labels])  # the card's names: never markup
        choice.display = True
        choice.highlighted = 0
        choice.focus()
        self.query_one("#wait-status", Static).update(shape(stage_label("choose_application")))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._choice = event.option_index
        self.query_one("#app-choice", OptionList).display = False
        self._chosen.set()

    def _in_words(self, result: Any) -> Any:
        """In the worker: the decline's words from the journal's last event detail (its response code)."""
        try:
            events = self.gapp.backend.flow.journal.audit(result.payments[0].payment_id)
        except Exception:  # noqa: BLE001 - the words are a courtesy: the message stays as it was
            return result
        detail = next((e.get("detail") for e in reversed(events) if e.get("detail")), None)
        return dataclasses.replace(result, message=decline_text(detail, result.message))

    def on_pay_status(self, msg: PayStatus) -> None:
        if self.cancel_event.is_set() and msg.key != "remove_card":
            return
        self.status_key = msg.key
        self.query_one("#wait-status", Static).update(plain(shape(stage_label(msg.key))))  # an unnamed key as is

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()

    def action_cancel(self) -> None:
        if self.finished:
            return
        self.cancel_event.set()
        self._chosen.set()
        self.status_key = "cancelling"
        self.query_one("#wait-status", Static).update(shape(wait_label("cancelling")))
        self.query_one("#cancel", Button).disabled = True

    def on_pay_finished(self, msg: PayFinished) -> None:
        self.finished = True
        self.dismiss(msg.error if msg.error is not None else msg.result)

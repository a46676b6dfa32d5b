"""The receipt on screen, printed, e-mailed or texted.

    app.push_screen(ReceiptScreen(payments))                 # after a payment: prints at once (printer set)
    app.push_screen(ReceiptScreen(payments, reprint=True))   # from the history: R prints a DUPLICATA

After a payment with `[printer] url` set, the receipt prints in a worker (the payment is done and journaled
before this screen opens; a printer fault only queues the receipt, agent/printing.py). The print line says
what happened: printed, or waiting for the printer and why (paper out, cover open, offline, ...). R reprints
(DUPLICATA). M puts the cursor in the customer's e-mail or mobile field (rules: agent.outbox.parse_address);
Enter there (or Send) journals the request, sent by the receipt-send job. P writes the text to the state
dir's receipts/ (no printer needed). Enter elsewhere or Escape closes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from agent.errors import GuichetError
from agent.outbox import AddressError
from ui import i18n
from ui.i18n import N_, _, shape, t
from ui.plain import plain, visible
from ui.receipt import PrintOutcome, print_payment, printer_configured, receipt_text, request_send, send_requests
from ui.screens.base import CounterModal

# The printer's problems as PrinterStatus.problem words them; anything else stays in the driver's words.
PROBLEMS = {p: p for p in (N_("paper out"), N_("cover open"), N_("offline"))}
# agent.outbox.parse_address's refusals that depend on the counter's country, word for word
COUNTRY_RULES = {r: r for r in (N_("not a mobile number: a Tunisian number needs +216 at this counter"),
                                N_("not a mobile number: an Algerian number needs +213 at this counter"))}


def print_line(outcome: PrintOutcome) -> str:
    """The print result in the cashier's language."""
    if outcome.state == "printed":
        if any("status unknown after the job" in note for note in outcome.notes):
            # every byte went out, the printer did not confirm in time: the cashier looks at the paper
            return t("Receipt printed (the printer did not confirm: check the paper)")
        return t("Receipt printed")
    if outcome.state == "queued":
        problem = _(outcome.message) if outcome.message in PROBLEMS else outcome.message
        return t("Waiting for the printer: {problem}. It prints when the printer is back.", problem=problem)
    if outcome.state == "failed":
        return t("Not printed: {problem}", problem=outcome.message)
    return t("No printer configured")


def request_line(channel: str, hint: str, state: str, reason: str) -> str:
    """One e-mail/SMS request as the cashier reads it (its address only as a hint)."""
    what = _("E-mail") if channel == "email" else _("SMS")
    if state == "sent":
        return t("{what} to {to}: sent", what=what, to=hint)
    if state == "attention":
        return t("{what} to {to}: refused ({reason})", what=what, to=hint, reason=reason)
    return t("{what} to {to}: waiting", what=what, to=hint)


class ReceiptScreen(CounterModal):
    BINDINGS = [
        Binding("escape", "close", "Close", priority=True),
        Binding("enter", "enter", "Close", priority=True),
        Binding("p", "write", "Write"),
        Binding("r", "reprint", "Reprint"),
        Binding("m", "address", "E-mail / SMS"),
    ]

    def __init__(self, payments: list[Any], *, reprint: bool = False) -> None:
        super().__init__()
        self.payments = payments
        self.reprint = reprint
        self.print_outcome: PrintOutcome | None = None
        self.print_text = ""
        self.sent_to: list[str] = []

    def text(self) -> str:
        return receipt_text(self.payments, reprint=self.reprint)

    @property
    def number(self) -> str:
        return str(self.payments[0].receipt_number) if self.payments else ""

    def compose(self) -> ComposeResult:
        with Vertical(id="receipt-box", classes="box"):
            with VerticalScroll():
                yield Static(plain(shape(self.text())), id="receipt")  # server/journal text
            yield Static("", id="print-status")
            with Horizontal():
                yield Button(t("Reprint (R)"), id="reprint")
                yield Button(t("Print (P)"), id="print")
            yield Input(id="address", placeholder=t("Customer e-mail or mobile (M)"), max_length=254)
            yield Button(t("Send"), id="send")
            yield Static("", id="send-status")
            yield Static(t("Enter: close"), classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        cfg = self.gapp.config
        if not printer_configured(cfg):
            self._show_print(PrintOutcome("off"))
        elif not self.reprint and self.payments:
            self.query_one("#print-status", Static).update(t("Printing..."))
            self.print_receipt(duplicate=False)
        if self.reprint and self.payments:
            self.load_requests()

    # -- printing -------------------------------------------------------------------------------------------

    def _show_print(self, outcome: PrintOutcome) -> None:
        self.print_outcome = outcome
        self.print_text = print_line(outcome)  # through t(): translated and shaped for the screen
        self.query_one("#print-status", Static).update(plain(self.print_text))  # the printer's words: never markup

    @work(thread=True, exit_on_error=False, group="print", exclusive=True)
    def print_receipt(self, duplicate: bool) -> None:
        try:
            outcome = print_payment(self.gapp.config, self.payments, duplicate=duplicate)
        except Exception as e:  # noqa: BLE001 - print_payment does not raise; if it did, the screen says so
            outcome = PrintOutcome("failed", f"{type(e).__name__}: {e}")
        self.app.call_from_thread(self._show_print, outcome)

    def action_reprint(self) -> None:
        if isinstance(self.focused, Input) or not self.payments:
            return
        if not printer_configured(self.gapp.config):
            self._show_print(PrintOutcome("off"))
            return
        self.query_one("#print-status", Static).update(t("Printing..."))
        self.print_receipt(duplicate=True)

    # -- e-mail / SMS ---------------------------------------------------------------------------------------

    def action_address(self) -> None:
        if not isinstance(self.focused, Input):
            self.query_one("#address", Input).focus()

    def action_enter(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.action_send()
        elif isinstance(focused, Button):  # tabbed to a button: Enter presses it, as everywhere else
            focused.press()
        else:
            self.action_close()

    def action_send(self) -> None:
        field = self.query_one("#address", Input)
        text = field.value.strip()
        status = self.query_one("#send-status", Static)
        if not text:
            status.update(t("Type the customer's e-mail address or mobile number"))
            field.focus()
            return
        self.send(text, i18n.language())

    @work(thread=True, exit_on_error=False, group="send", exclusive=True)
    def send(self, text: str, language: str) -> None:
        try:
            address = request_send(self.gapp.config, self.number, text, language=language)
        except AddressError as e:
            rule = (_(str(e)) if str(e) in COUNTRY_RULES else
                    _("not an e-mail address: name@domain.tld") if "@" in text else
                    _("not a mobile number: Algeria 05, 06 or 07 + 8 digits, or +213; "
                      "Tunisia 8 digits starting with 2, 4, 5 or 9, or +216"))
            self.app.call_from_thread(self._send_refused, rule)
            return
        except GuichetError as e:
            self.app.call_from_thread(self._send_refused, str(e))
            return
        scheduler = getattr(self.app, "scheduler", None)
        if scheduler is not None:
            scheduler.wake("receipt-send")  # the job sends it now when the link is up
        self.app.call_from_thread(self._send_queued, address.hint, address.channel)

    def _send_refused(self, reason: str) -> None:
        self.query_one("#send-status", Static).update(plain(t("Not sent: {reason}", reason=reason)))
        self.query_one("#address", Input).focus()

    def _send_queued(self, hint: str, channel: str) -> None:
        field = self.query_one("#address", Input)
        field.value = ""  # the address leaves the screen too
        self.sent_to.append(hint)
        what = _("E-mail") if channel == "email" else _("SMS")
        self.query_one("#send-status", Static).update(plain(
            t("{what} to {to}: will be sent (it waits if the server cannot be reached)", what=what, to=hint)))
        self.set_focus(None)

    @work(thread=True, exit_on_error=False, group="send")
    def load_requests(self) -> None:
        """This receipt's earlier e-mail/SMS requests (a receipt opened from the history): one line each."""
        try:
            requests = send_requests(self.gapp.config, self.number)
        except GuichetError as e:
            lines = [t("Not sent: {reason}", reason=str(e))]
        else:
            lines = [request_line(r.channel, r.hint, r.state, r.reason) for r in requests[-3:]]
        if lines:
            self.app.call_from_thread(self.query_one("#send-status", Static).update, plain("\n".join(lines)))

    # -- the rest -------------------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "print":
            self.action_write()
        elif event.button.id == "reprint":
            self.action_reprint()
        elif event.button.id == "send":
            self.action_send()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_write(self) -> None:
        if isinstance(self.focused, Input):
            return
        self.write_receipt()

    @work(thread=True, exit_on_error=False, group="write")
    def write_receipt(self) -> None:
        out = Path(self.gapp.config.state.dir) / "receipts"
        try:
            out.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = out / f"{self.number}{'-dup' if self.reprint else ''}.txt"
            # The customer's name and masked card: created private, never readable by others even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.text() + "\n")
        except OSError as e:
            self.app.call_from_thread(self.notify, visible(e), severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, visible(t("Receipt written to {path}", path=str(path))), markup=False)

"""Unknown outcomes: payments whose authorisation may or may not have charged the card.

Never guessed: the cashier settles each from the terminal's own ticket (approved with its authorisation
code, the card scheme and the card's last 4 digits or its masked number as printed, or "No card digits on
the ticket" ticked when it prints none; or declined, pressed
twice: declined is final and frees the bill to be paid again); a card_reader payment is settled from the
server's authorization record, which the cashier cannot contradict. What is typed is checked by the core's
own rules (PaymentFlow.check_ticket) before anything is written, and each refusal is read in the cashier's
language. Each settle records who settled it and when (see History → A for the trail). A card number typed
by mistake is cleared the moment it is recognised, and the card digits are cleared after every attempt.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Static

from agent.errors import GuichetError, SettlementRefused
from drivers.pan import digits_hold_pan, masked_pan_fault
from ui import i18n
from ui.i18n import shape, t
from ui.messages import Loaded
from ui.plain import plain
from ui.screens.base import CounterScreen
from ui.text import error_text, local_hm, method_label, money

FULL_NUMBER = "That is a full card number: type only the last 4 digits"


def holds_card_number(text: str) -> bool:
    """A full card number, or more digits than a masked one ever shows (the one rule: drivers.pan)."""
    return digits_hold_pan(text) or masked_pan_fault("".join(text.split())) == "full"


class UnknownScreen(CounterScreen):
    TITLE_TEXT = "Unknown outcomes"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] = []
        self.message = ""
        self.busy = False  # a settle is on its way: another press would only be refused
        self.decline_armed: str | None = None  # the payment a first press of Declined asked about
        self.answered = False  # the message is a settle's answer

    def body(self) -> ComposeResult:
        with Vertical(id="unknown-box"):
            yield Static(
                t("These payments may have charged the card. Read the terminal's ticket, then settle each one."),
                classes="hint",
            )
            yield DataTable(id="unknown-table", cursor_type="row", zebra_stripes=True)
            card = [
                Label(t("Card scheme")),
                Input(id="card-scheme", max_length=40, restrict=r"[A-Za-z0-9_ ]*", placeholder="CIB"),
                Label(t("Last 4 digits")),
                Input(id="card-last4", max_length=23, restrict=r"[0-9*Xx# ]*", placeholder="1234"),
                Checkbox(t("No card digits on the ticket"), id="no-card-digits"),
            ]
            card[-1].styles.width = "auto"  # its own width, so the fields stay on screen right to left too
            yield Horizontal(*(reversed(card) if i18n.is_rtl() else card), id="settle-card")
            settle = [
                Label(t("Authorisation code on the ticket")),
                Input(id="auth-code", max_length=12, restrict=r"[A-Za-z0-9]*"),
                Button(t("Approved"), id="settle-approved", variant="success"),
                Button(t("Declined"), id="settle-declined", variant="error"),
                Button(t("Ask the server"), id="settle-online"),
            ]
            # Right to left: the row reads from the right (label first), like the table's columns.
            yield Horizontal(*(reversed(settle) if i18n.is_rtl() else settle), id="settle-row")
            yield Static(plain(self.message), id="unknown-message", classes="message")  # may quote the server

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False, group="unknown-load", exclusive=True)
    def load(self) -> None:
        try:
            self.post_message(Loaded("unknown", self.gapp.backend.journal.unknown()))
        except Exception as e:
            self.post_message(Loaded("unknown", error=e))

    def on_loaded(self, msg: Loaded) -> None:
        if msg.what == "settled":
            self.busy = False
            self.answered = True
            self.clear_card_digits()  # whatever the outcome: never left on the screen
            self.gapp.refresh_status()
            if msg.error is not None:
                self.say(error_text(msg.error))
            else:
                done = msg.data or []
                if done:
                    self.say(t("Settled {receipt}: {state}", receipt=done[0].receipt_number, state=done[0].state))
                for field in ("#auth-code", "#card-scheme"):
                    self.query_one(field, Input).value = ""
                self.query_one("#no-card-digits", Checkbox).value = False
            self.load()
            return
        if msg.what != "unknown":
            return
        if msg.error is not None:
            self.say(error_text(msg.error))
            return
        self.rows = msg.data
        self.fill()

    def refill(self) -> None:
        self.fill()

    def fill(self) -> None:
        table = self.query_one("#unknown-table", DataTable)
        table.clear(columns=True)
        cols = [t("Time"), t("Receipt"), t("Bill"), t("Amount"), t("Method"), t("Cashier")]
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for p in self.rows:
            row = [  # journal text: never markup (rich Text, not str)
                plain(local_hm(p.captured_at)),
                plain(p.receipt_number),
                plain(p.bill_reference),
                plain(shape(money(p.amount, p.currency))),
                plain(shape(method_label(p.method))),
                plain(p.cashier_id),
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row), key=p.payment_id)
        left = t("No unknown outcome left.")
        if not self.rows:
            if left not in self.message:  # a settle's answer stays in view, followed by this
                self.say(f"{self.message} · {left}" if self.answered and self.message else left)
        elif left in self.message:  # another one came since (a restart, a payment)
            self.say("")

    def say(self, text: str) -> None:
        self.message = text
        self.query_one("#unknown-message", Static).update(plain(text))

    def selected(self) -> Any | None:
        table = self.query_one("#unknown-table", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def clear_card_digits(self) -> None:
        self.query_one("#card-last4", Input).value = ""

    @on(Input.Changed, "#card-last4")
    @on(Input.Changed, "#card-scheme")
    def _digits_typed(self, event: Input.Changed) -> None:
        """A card number is cleared the moment it is recognised, before any button is pressed (in the scheme
        field too: it takes digits; the code field is too short to hold one)."""
        if event.value and holds_card_number(event.value):
            event.input.value = ""
            self.say(t(FULL_NUMBER))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        armed, self.decline_armed = self.decline_armed, None  # any other press disarms Declined
        if self.busy:
            return  # the settle under way answers; a second one would only be refused
        self.answered = False
        p = self.selected()
        if p is None:
            self.say(t("Select a payment first"))
            return
        if event.button.id == "settle-approved":
            code = self.query_one("#auth-code", Input).value.strip()
            if not code and p.method != "card_reader":  # a reader payment takes the server's code
                self.say(t("Type the authorisation code printed on the terminal's ticket"))
                self.query_one("#auth-code", Input).focus()
                return
            scheme = self.query_one("#card-scheme", Input).value.strip() or None
            digits = self.query_one("#card-last4", Input).value.strip() or None
            none = self.query_one("#no-card-digits", Checkbox).value  # said explicitly: the contract allows it
            if not self.ticket_ok(p, code or None, scheme, digits, none):
                return
            self.start()
            self.settle(p.payment_id, True, code or None, scheme, digits, none)
        elif event.button.id == "settle-declined":
            self.clear_card_digits()
            if armed != p.payment_id:
                self.decline_armed = p.payment_id
                self.say(t("The customer was NOT charged: the terminal's ticket says refused/cancelled? "
                           "Press Declined again to confirm"))
                return
            self.start()
            self.settle(p.payment_id, False, None)
        elif event.button.id == "settle-online":
            self.start()
            self.resolve(p.payment_id)

    def start(self) -> None:
        self.busy = True
        self.clear_card_digits()

    def ticket_ok(
        self, p: Any, code: str | None, scheme: str | None, digits: str | None, no_digits: bool = False
    ) -> bool:
        """What was typed, checked by the core's own rules before settling; a refusal is said in the cashier's
        language and the field at fault gets the focus (a full card number is cleared)."""
        try:
            self.gapp.backend.flow.check_ticket(
                p, approved=True, actor=self.gapp.cashier.cashier_id, code=code, scheme=scheme, pan_masked=digits,
                no_card_digits=no_digits,
            )
        except SettlementRefused as e:
            kind = str(getattr(e, "kind", ""))
            if kind == "pan_full":
                self.clear_card_digits()
            field = "#card-last4" if kind.startswith("pan_") else "#card-scheme" if kind.startswith("scheme") else None
            if field:
                self.query_one(field, Input).focus()
            self.say(error_text(e))
            return False
        except GuichetError as e:
            self.say(error_text(e))
            return False
        return True

    @on(Input.Submitted, "#auth-code")
    def _code_entered(self) -> None:
        self.query_one("#settle-approved", Button).press()

    @work(thread=True, exit_on_error=False, group="settle", exclusive=True)
    def settle(
        self,
        payment_id: str,
        approved: bool,
        code: str | None,
        scheme: str | None = None,
        last4: str | None = None,
        no_card_digits: bool = False,
    ) -> None:
        app = self.gapp
        try:
            done = app.backend.flow.settle_unknown(
                payment_id, approved=approved, code=code, actor=app.cashier.cashier_id, scheme=scheme,
                pan_masked=last4, no_card_digits=no_card_digits,
            )
        except Exception as e:
            self.post_message(Loaded("settled", error=e))
            return
        self.post_message(Loaded("settled", done))

    @work(thread=True, exit_on_error=False, group="settle", exclusive=True)
    def resolve(self, payment_id: str) -> None:
        app = self.gapp
        try:
            done = app.backend.flow.resolve_unknown_online(payment_id, actor=app.cashier.cashier_id)
        except Exception as e:
            self.post_message(Loaded("settled", error=e))
            return
        self.post_message(Loaded("settled", done))

    def action_back(self) -> None:
        self.app.pop_screen()

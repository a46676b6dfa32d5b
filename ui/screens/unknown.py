"""Unknown outcomes: payments whose authorisation may or may not have charged the card.

Never guessed: the cashier settles each from the terminal's own ticket (approved with its authorisation
code, the card scheme and the card's last 4 digits or its masked number as printed; or declined); a
card_reader payment is settled from the server's authorization record, which the cashier cannot contradict.
Each settle records who settled it and when (see History → A for the trail); a card number typed by mistake
is refused, cleared from the screen and never kept.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Static

from agent.errors import SettlementRefused
from agent.payments import ticket_pan_masked
from ui import i18n
from ui.i18n import shape, t
from ui.messages import Loaded
from ui.screens.base import CounterScreen
from ui.text import error_text, local_hm, method_label, money


class UnknownScreen(CounterScreen):
    TITLE_TEXT = "Unknown outcomes"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Any] = []
        self.message = ""

    def body(self) -> ComposeResult:
        with Vertical(id="unknown-box"):
            yield Static(
                t("These payments may have charged the card. Read the terminal's ticket, then settle each one."),
                classes="hint",
            )
            yield DataTable(id="unknown-table", cursor_type="row", zebra_stripes=True)
            card = [
                Label(t("Card scheme")),
                Input(id="card-scheme", max_length=20, restrict=r"[A-Za-z0-9_]*", placeholder="CIB"),
                Label(t("Last 4 digits")),
                Input(id="card-last4", max_length=23, restrict=r"[0-9*Xx# ]*", placeholder="1234"),
            ]
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
            yield Static(self.message, id="unknown-message", classes="message")

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
            self.gapp.refresh_status()
            if msg.error is not None:
                self.say(error_text(msg.error))
            else:
                done = msg.data or []
                if done:
                    self.say(t("Settled {receipt}: {state}", receipt=done[0].receipt_number, state=done[0].state))
                for field in ("#auth-code", "#card-scheme", "#card-last4"):
                    self.query_one(field, Input).value = ""
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
            row = [
                local_hm(p.captured_at),
                p.receipt_number,
                p.bill_reference,
                money(p.amount, p.currency),
                shape(method_label(p.method)),
                p.cashier_id,
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row), key=p.payment_id)
        if not self.rows:
            self.say(t("No unknown outcome left."))
        elif self.message == t("No unknown outcome left."):  # another one came since (a restart, a payment)
            self.say("")

    def say(self, text: str) -> None:
        self.message = text
        self.query_one("#unknown-message", Static).update(text)

    def selected(self) -> Any | None:
        table = self.query_one("#unknown-table", DataTable)
        if not self.rows or table.cursor_row < 0 or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
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
            ok, last4 = self.ticket_digits(p)
            if not ok:
                return
            known = (getattr(p, "card", None) or {}).get("scheme")
            shown = ticket_pan_masked(last4) if last4 else ""
            if p.method == "card_terminal" and not scheme and not known and not shown[:1].isdigit():
                # only the first 6 digits on a ticket name the scheme (through the BIN rules)
                self.say(t("Type the card scheme printed on the ticket (e.g. CIB)"))
                self.query_one("#card-scheme", Input).focus()
                return
            self.settle(p.payment_id, True, code or None, scheme, last4 or None)
        elif event.button.id == "settle-declined":
            self.settle(p.payment_id, False, None)
        elif event.button.id == "settle-online":
            self.resolve(p.payment_id)

    def ticket_digits(self, p: Any) -> tuple[bool, str | None]:
        """The card digits typed from the ticket, checked here so the cashier reads why in their language:
        (True, digits or None when none are needed), or (False, None) after saying what is wrong. A full card
        number is cleared from the screen at once."""
        field = self.query_one("#card-last4", Input)
        typed = field.value.strip()
        if not typed:
            if p.method == "card_terminal" and not (getattr(p, "card", None) or {}).get("pan_masked"):
                self.say(t("Type the card's last 4 digits printed on the ticket"))
                field.focus()
                return False, None
            return True, None
        try:
            ticket_pan_masked(typed)
        except SettlementRefused:
            digits = "".join(ch for ch in typed if ch.isdigit())
            if len(digits) >= 12:
                field.value = ""  # never left on the screen
                self.say(t("That is a full card number: type only the last 4 digits"))
            else:
                self.say(t("Last 4 digits: type the 4 digits, or the masked number as printed (* for hidden)"))
            field.focus()
            return False, None
        return True, typed

    @on(Input.Submitted, "#auth-code")
    def _code_entered(self) -> None:
        self.query_one("#settle-approved", Button).press()

    @work(thread=True, exit_on_error=False, group="settle")
    def settle(
        self, payment_id: str, approved: bool, code: str | None, scheme: str | None = None, last4: str | None = None
    ) -> None:
        app = self.gapp
        try:
            done = app.backend.flow.settle_unknown(
                payment_id, approved=approved, code=code, actor=app.cashier.cashier_id, scheme=scheme,
                pan_masked=last4,
            )
        except Exception as e:
            self.post_message(Loaded("settled", error=e))
            return
        self.post_message(Loaded("settled", done))

    @work(thread=True, exit_on_error=False, group="settle")
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

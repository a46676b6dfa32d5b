"""Unknown outcomes: payments whose authorisation may or may not have charged the card.

Never guessed: the cashier settles each from the terminal's own ticket (approved with its authorisation
code, or declined); for card_reader payments the server can be asked. Each settle is audited with the
cashier's id (see History → A for the trail).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Static

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
                self.query_one("#auth-code", Input).value = ""
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
            if not code:
                self.say(t("Type the authorisation code printed on the terminal's ticket"))
                self.query_one("#auth-code", Input).focus()
                return
            self.settle(p.payment_id, True, code)
        elif event.button.id == "settle-declined":
            self.settle(p.payment_id, False, None)
        elif event.button.id == "settle-online":
            self.resolve(p.payment_id)

    @on(Input.Submitted, "#auth-code")
    def _code_entered(self) -> None:
        self.query_one("#settle-approved", Button).press()

    @work(thread=True, exit_on_error=False, group="settle")
    def settle(self, payment_id: str, approved: bool, code: str | None) -> None:
        app = self.gapp
        try:
            done = app.backend.flow.settle_unknown(
                payment_id, approved=approved, code=code, actor=app.cashier.cashier_id
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

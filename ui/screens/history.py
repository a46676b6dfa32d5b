"""Today's payments (F3) and the needs-attention list (F4): search, reprint (Enter), audit trail (A), and what
the billing server recorded for the selected payment (S: `GET /v1/payments/{id}`, agent.payments.server_view),
for a customer told at home that the bill is unpaid.

Needs attention: uploads the server rejected, payments credited to the customer's account instead of
the bill (notice), and unknown outcomes. The audit trail (who moved a payment to which state, and
who settled an unknown outcome) is for supervisors: a cashier is asked for a supervisor's PIN.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Static

from agent import states
from ui import i18n
from ui.i18n import shape, t
from ui.messages import Loaded
from ui.screens.base import CounterModal, CounterScreen
from ui.text import error_text, local_hm, local_when, method_label, money, notice_label, state_label, value


def needs_attention(p: Any) -> bool:
    return states.needs_attention(value(p.state), p.notice)


def matches(p: Any, query: str) -> bool:
    """Search: bill reference, receipt number, card's last digits, amount, cashier, state."""
    q = query.strip().lower()
    if not q:
        return True
    card = (p.card or {}).get("pan_masked", "") or ""
    hay = " ".join(
        [p.bill_reference, p.receipt_number, card, str(p.amount), money(p.amount, p.currency),
         p.cashier_id, value(p.state), state_label(p.state), p.payment_id]
    ).lower()
    return all(word in hay for word in q.split())


class HistoryScreen(CounterScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("a", "audit", "Audit trail"),
        Binding("s", "server_view", "On the server"),
    ]

    def __init__(self, mode: str = "today") -> None:
        super().__init__()
        self.mode = mode
        self.TITLE_TEXT = "Needs attention" if mode == "attention" else "Today's payments"
        self.all: list[Any] = []
        self.shown: list[Any] = []
        self.query_text = ""

    def body(self) -> ComposeResult:
        with Vertical(id="history-box"):
            yield Input(self.query_text, id="search", placeholder=t("Search: reference, receipt, card, amount…"))
            yield DataTable(id="history-table", cursor_type="row", zebra_stripes=True)
            yield Static(
                t("Enter: reprint the receipt · A: audit trail (supervisor) · S: on the server · Esc: back"),
                classes="hint",
            )
            yield Static("", id="history-message", classes="message", markup=False)  # server text

    def on_mount(self) -> None:
        self.load()
        self.query_one("#history-table", DataTable).focus()

    @work(thread=True, exit_on_error=False, group="history", exclusive=True)
    def load(self) -> None:
        from agent.payments import today_start

        journal = self.gapp.backend.journal
        try:
            if self.mode == "attention":
                rows = [p for p in journal.list(limit=5000) if needs_attention(p)]
            else:
                rows = journal.list(since=today_start(), limit=5000)
        except Exception as e:
            self.post_message(Loaded("history", error=e))
            return
        self.post_message(Loaded("history", rows))

    def on_loaded(self, msg: Loaded) -> None:
        if msg.what == "server-view":
            view = msg.data
            if msg.error is not None:
                text = error_text(msg.error)
            else:
                text = t(SERVER_VIEW.get(view.status, "{detail}"), detail=view.message)
            self.query_one("#history-message", Static).update(text)
            return
        if msg.what != "history":
            return
        if msg.error is not None:
            self.query_one("#history-message", Static).update(error_text(msg.error))
            return
        self.all = msg.data
        self.fill()

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self.fill()

    def refill(self) -> None:
        self.fill()

    def fill(self) -> None:
        self.shown = [p for p in self.all if matches(p, self.query_text)]
        table = self.query_one("#history-table", DataTable)
        table.clear(columns=True)
        cols = [t("Time"), t("Receipt"), t("Bill"), t("Amount"), t("Method"), t("Card"), t("State"), t("Cashier")]
        if self.mode == "attention":
            cols.append(t("Why"))
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for p in self.shown:
            row = [  # journal and server text: never markup (rich Text, not str)
                Text(local_hm(p.captured_at)),
                Text(p.receipt_number),
                Text(p.bill_reference),
                Text(shape(money(p.amount, p.currency))),
                Text(shape(method_label(p.method))),
                Text((p.card or {}).get("pan_masked", "") or ""),
                Text(shape(state_label(p.state))),
                Text(p.cashier_id),
            ]
            if self.mode == "attention":
                why = notice_label(p.notice) if p.notice else (p.error or "")
                row.append(Text(shape(why)))
            table.add_row(*(reversed(row) if i18n.is_rtl() else row), key=p.payment_id)
        count = t("{n} payments", n=len(self.shown))
        self.query_one("#history-message", Static).update(count)

    def selected(self) -> Any | None:
        table = self.query_one("#history-table", DataTable)
        if not self.shown or not (0 <= table.cursor_row < len(self.shown)):
            return None
        return self.shown[table.cursor_row]

    @on(DataTable.RowSelected, "#history-table")
    def _reprint(self) -> None:
        p = self.selected()
        if p is not None:
            self.reprint(p.transaction_id)

    @on(Input.Submitted, "#search")
    def _to_table(self) -> None:
        self.query_one("#history-table", DataTable).focus()

    @work(thread=True, exit_on_error=False, group="reprint")
    def reprint(self, transaction_id: str) -> None:
        payments = self.gapp.backend.journal.transaction(transaction_id)
        self.app.call_from_thread(self._show_receipt, payments)

    def _show_receipt(self, payments: list[Any]) -> None:
        from ui.screens.receipt import ReceiptScreen

        self.app.push_screen(ReceiptScreen(payments, reprint=True))

    def action_audit(self) -> None:
        if isinstance(self.focused, Input):
            return
        p = self.selected()
        if p is None:
            return
        cashier = self.gapp.cashier
        if cashier is not None and cashier.is_supervisor:
            self.app.push_screen(AuditScreen(p))
            return
        from ui.screens.supervisor import SupervisorScreen

        def then(who: Any) -> None:
            if who is not None:
                self.app.push_screen(AuditScreen(p))

        self.app.push_screen(SupervisorScreen(), then)

    def action_server_view(self) -> None:
        if isinstance(self.focused, Input):
            return
        p = self.selected()
        if p is None:
            return
        self.query_one("#history-message", Static).update(t("Asking the billing server…"))
        self.ask_server(p)

    @work(thread=True, exit_on_error=False, group="server-view", exclusive=True)
    def ask_server(self, payment: Any) -> None:
        from agent.payments import server_view

        try:
            view = server_view(self.gapp.backend.client, payment)
        except Exception as e:
            self.post_message(Loaded("server-view", error=e))
            return
        self.post_message(Loaded("server-view", view))

    def action_back(self) -> None:
        self.app.pop_screen()


# What the server's view says to the cashier, per ServerView.status; the details stay in English (field names).
SERVER_VIEW = {
    "recorded": "On the server: {detail}",
    "absent": "Not on the server: {detail}",
    "not_uploaded": "Not sent yet: {detail}",
    "unreachable": "Server unreachable: {detail}",
}


class AuditScreen(CounterModal):
    """Every state change of one payment: when, from, to, who, and why."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, payment: Any) -> None:
        super().__init__()
        self.payment = payment

    def compose(self) -> ComposeResult:
        with Vertical(id="audit-box", classes="box"):
            yield Static(
                t("Audit trail of {receipt} (bill {ref})", receipt=self.payment.receipt_number,
                  ref=self.payment.bill_reference),
                classes="big",
                markup=False,
            )
            with VerticalScroll():
                yield DataTable(id="audit-table", cursor_type="row")

    def on_mount(self) -> None:
        super().on_mount()
        self.load()

    @work(thread=True, exit_on_error=False, group="audit")
    def load(self) -> None:
        rows = self.gapp.backend.journal.audit(self.payment.payment_id)
        self.post_message(Loaded("audit", rows))

    def on_loaded(self, msg: Loaded) -> None:
        table = self.query_one("#audit-table", DataTable)
        cols = [t("When"), t("From"), t("To"), t("Who"), t("Detail")]
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for r in msg.data or []:
            detail = r.get("detail") or ""
            if isinstance(detail, dict):
                detail = ", ".join(f"{k}={v}" for k, v in detail.items())
            row = [
                Text(local_when(r["at"], seconds=True)),
                Text(shape(state_label(r["from_state"])) if r["from_state"] else "-"),
                Text(shape(state_label(r["to_state"]))),
                Text(str(r["actor"] or "")),
                Text(str(detail)[:60]),  # the audit's detail may quote the server
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row))

    def action_close(self) -> None:
        self.dismiss(None)

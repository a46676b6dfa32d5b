"""The live panel while the card or the terminal works: what to do now, and Escape to cancel.

The payment runs in a thread worker (`flow.pay`); its status keys arrive as messages. Cancelling sets an
event the authorizer watches: the panel stays until the flow says what really happened (cancelled,
or approved/declined/unknown if the amount had already left).
"""

from __future__ import annotations

import threading
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, LoadingIndicator, Static

from ui.i18n import shape, t
from ui.messages import PayFinished, PayStatus
from ui.screens.base import CounterModal
from ui.text import method_label, money, wait_label


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

    def compose(self) -> ComposeResult:
        with Vertical(id="wait-box", classes="box"):
            yield Static(t("Amount to pay: {amount}", amount=money(self.total, self.currency)), classes="total")
            yield Static(shape(method_label(self.method)))
            yield Static(shape(wait_label(self.status_key)), id="wait-status", classes="big")
            yield LoadingIndicator()
            yield Button(t("Cancel (Esc)"), id="cancel", variant="error")

    def on_mount(self) -> None:
        super().on_mount()
        self.pay()

    @work(thread=True, exit_on_error=False, group="pay")
    def pay(self) -> None:
        app = self.gapp
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
        except Exception as e:
            self.post_message(PayFinished(error=e))
            return
        self.post_message(PayFinished(result))

    def on_pay_status(self, msg: PayStatus) -> None:
        if self.cancel_event.is_set() and msg.key != "remove_card":
            return
        self.status_key = msg.key
        self.query_one("#wait-status", Static).update(shape(wait_label(msg.key)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.action_cancel()

    def action_cancel(self) -> None:
        if self.finished:
            return
        self.cancel_event.set()
        self.status_key = "cancelling"
        self.query_one("#wait-status", Static).update(shape(wait_label("cancelling")))
        self.query_one("#cancel", Button).disabled = True

    def on_pay_finished(self, msg: PayFinished) -> None:
        self.finished = True
        self.dismiss(msg.error if msg.error is not None else msg.result)

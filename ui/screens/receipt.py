"""The receipt on screen; P writes it for the printer (state dir receipts/), Enter or Escape closes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Static

from ui.i18n import shape, t
from ui.receipt import receipt_text
from ui.screens.base import CounterModal


class ReceiptScreen(CounterModal):
    BINDINGS = [
        Binding("escape,enter", "close", "Close", priority=True),
        Binding("p", "print", "Print"),
    ]

    def __init__(self, payments: list[Any], *, reprint: bool = False) -> None:
        super().__init__()
        self.payments = payments
        self.reprint = reprint

    def text(self) -> str:
        return receipt_text(self.payments, reprint=self.reprint)

    def compose(self) -> ComposeResult:
        with Vertical(id="receipt-box", classes="box"):
            with VerticalScroll():
                yield Static(shape(self.text()), id="receipt")
            yield Button(t("Print (P)"), id="print")
            yield Static(t("Enter: close"), classes="hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "print":
            self.action_print()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_print(self) -> None:
        self.write_receipt()

    @work(thread=True, exit_on_error=False, group="print")
    def write_receipt(self) -> None:
        out = Path(self.gapp.config.state.dir) / "receipts"
        try:
            out.mkdir(parents=True, exist_ok=True, mode=0o700)
            number = self.payments[0].receipt_number
            path = out / f"{number}{'-dup' if self.reprint else ''}.txt"
            # The customer's name and masked card: created private, never readable by others even briefly.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.text() + "\n")
        except OSError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error")
            return
        self.app.call_from_thread(self.notify, t("Receipt written to {path}", path=str(path)))

"""Ask for a supervisor's id and PIN before a supervisor action; dismisses with the Cashier or None."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input, Label, Static

from ui.i18n import t
from ui.messages import LoginResult
from ui.plain import plain
from ui.screens.base import CounterModal
from ui.text import error_text


class SupervisorScreen(CounterModal):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="supervisor-box", classes="box"):
            yield Static(t("Supervisor required"), classes="big")
            yield Label(t("Supervisor id"))
            yield Input(id="sup-id")
            yield Label(t("PIN"))
            yield Input(id="sup-pin", password=True, restrict=r"\d*", max_length=12)
            yield Static("", id="sup-error", classes="error")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#sup-id", Input).focus()

    @on(Input.Submitted, "#sup-id")
    def _next(self) -> None:
        self.query_one("#sup-pin", Input).focus()

    @on(Input.Submitted, "#sup-pin")
    def _submit(self) -> None:
        self.query_one("#sup-error", Static).update(t("Checking…"))
        self.verify(self.query_one("#sup-id", Input).value.strip(), self.query_one("#sup-pin", Input).value)

    @work(thread=True, exit_on_error=False, group="supervisor")
    def verify(self, cid: str, pin: str) -> None:
        try:
            who = self.gapp.backend.cashiers.verify_supervisor(cid, pin)
        except Exception as e:
            self.post_message(LoginResult(error=e))
            return
        self.post_message(LoginResult(who))

    def on_login_result(self, msg: LoginResult) -> None:
        if msg.error is not None:
            self.query_one("#sup-error", Static).update(plain(error_text(msg.error)))  # may quote the typed id
            self.query_one("#sup-pin", Input).value = ""
            return
        self.dismiss(msg.cashier)

    def action_cancel(self) -> None:
        self.dismiss(None)

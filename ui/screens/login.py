"""Log in: cashier id + PIN (argon2id check in a worker), lockout, then the shift opens.

With no account at all (a fresh install) the screen creates the first supervisor instead.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from ui.i18n import t
from ui.messages import LoginResult
from ui.plain import plain
from ui.screens.base import CounterScreen
from ui.text import error_text


class LoginScreen(CounterScreen):
    TITLE_TEXT = "Log in"

    def __init__(self) -> None:
        super().__init__()
        self.cashier_id = ""
        self.error = ""
        self.busy = False
        self.first_run: bool | None = None

    def body(self) -> ComposeResult:
        with Horizontal(id="login-row"):
            with Vertical(id="login-box", classes="box"):
                if self.first_run:
                    yield Static(t("No cashier account yet: create the first supervisor."), classes="hint")
                    yield Label(t("Name"))
                    yield Input(id="name", placeholder=t("Name"))
                yield Label(t("Cashier"))
                yield Input(self.cashier_id, id="cashier-id", placeholder=t("Cashier id"))
                yield Label(t("PIN"))
                yield Input(id="pin", password=True, restrict=r"\d*", max_length=12, placeholder="••••")
                yield Button(t("Create") if self.first_run else t("Log in"), id="login", variant="primary")
                yield Static(plain(self.error), id="login-error", classes="error")


    def on_mount(self) -> None:
        self.check_first_run()
        if self.gapp.auto_login:
            cid, pin = self.gapp.auto_login
            self.gapp.auto_login = None
            self.busy = True
            self.verify(cid, pin)

    @work(thread=True, exit_on_error=False, group="login")
    def check_first_run(self) -> None:
        first = self.gapp.backend.cashiers.count() == 0
        self.app.call_from_thread(self._set_first_run, first)

    def _set_first_run(self, first: bool) -> None:
        if first != bool(self.first_run):
            self.first_run = first
            self.refresh(recompose=True)
        self.first_run = first
        self.call_after_refresh(self._focus_first)

    def _focus_first(self) -> None:
        target = "#name" if self.first_run else ("#pin" if self.cashier_id else "#cashier-id")
        self.query_one(target, Input).focus()

    @on(Input.Changed, "#cashier-id")
    def _keep_id(self, event: Input.Changed) -> None:
        self.cashier_id = event.value.strip()

    @on(Input.Submitted, "#cashier-id")
    def _to_pin(self) -> None:
        self.query_one("#pin", Input).focus()

    @on(Input.Submitted, "#name")
    def _to_id(self) -> None:
        self.query_one("#cashier-id", Input).focus()

    @on(Input.Submitted, "#pin")
    @on(Button.Pressed, "#login")
    def submit(self) -> None:
        if self.busy:
            return
        cid = self.query_one("#cashier-id", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not cid:
            self.show_error(t("Type your cashier id"))
            self.query_one("#cashier-id", Input).focus()
            return
        self.busy = True
        self.show_error(t("Checking…"))
        if self.first_run:
            name = self.query_one("#name", Input).value.strip()
            self.create_first(cid, name, pin)
        else:
            self.verify(cid, pin)

    @work(thread=True, exit_on_error=False, group="login")
    def verify(self, cashier_id: str, pin: str) -> None:
        self._login(cashier_id, pin)

    def _login(self, cashier_id: str, pin: str) -> None:
        backend = self.gapp.backend
        try:
            cashier = backend.cashiers.verify(cashier_id, pin)
            shift = backend.cashiers.open_shift(cashier.cashier_id)
            unknown = len(backend.journal.unknown())
        except Exception as e:
            self.post_message(LoginResult(error=e))
            return
        msg = LoginResult(cashier, shift)
        msg.unknown = unknown  # type: ignore[attr-defined]
        self.post_message(msg)

    @work(thread=True, exit_on_error=False, group="login")
    def create_first(self, cashier_id: str, name: str, pin: str) -> None:
        backend = self.gapp.backend
        try:
            if backend.cashiers.count():
                raise PermissionError("an account already exists: log in")
            backend.cashiers.add(cashier_id, name or cashier_id, pin, role="supervisor")
        except Exception as e:
            self.post_message(LoginResult(error=e))
            return
        self._login(cashier_id, pin)

    def on_login_result(self, msg: LoginResult) -> None:
        self.busy = False
        if msg.error is not None:
            self.show_error(error_text(msg.error))
            pin = self.query_one("#pin", Input)
            pin.value = ""
            pin.focus()
            return
        self.gapp.logged_in(msg.cashier, msg.shift, getattr(msg, "unknown", 0))

    def show_error(self, text: str) -> None:
        self.error = text
        self.query_one("#login-error", Static).update(plain(text))  # may quote the typed id or the journal

"""The drawer: the opening float at shift start, the count by denomination at shift close (from the Z report, F7:
O and D). A difference between counted and expected is recorded only with a supervisor's id and PIN.

    app.push_screen(OpeningFloatScreen())      # dismisses with the Drawer, or None
    app.push_screen(DrawerCountScreen())       # the notes and coins of [cash.denominations] for the currency

The cashier file's work (agent.cashiers.shifts) runs in workers; the count's total is worked out as it is typed
(agent.cash, pure).
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Static

from agent.cash import count_total
from config.money import MoneyError, parse_amount
from ui.i18n import shape, t
from ui.messages import Loaded
from ui.screens.base import CounterModal
from ui.text import error_text, money


class OpeningFloatScreen(CounterModal):
    """The cash put in the drawer when the shift starts."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="float-box", classes="box"):
            yield Static(t("Opening float"), classes="big")
            yield Label(t("Cash in the drawer at the start of the shift"))
            yield Input(id="float-amount", restrict=r"[0-9.,]*", max_length=19, placeholder="10000.00")
            yield Static("", id="float-message", classes="message", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#float-amount", Input).focus()

    @on(Input.Submitted, "#float-amount")
    def _submit(self, event: Input.Submitted) -> None:
        currency = self.gapp.config.terminal.currency
        try:
            amount = parse_amount(event.value, currency)
        except MoneyError as e:
            self.query_one("#float-message", Static).update(error_text(e))
            return
        self.save(amount, currency)

    @work(thread=True, exit_on_error=False, group="drawer")
    def save(self, amount: int, currency: str) -> None:
        app = self.gapp
        try:
            drawer = app.backend.cashiers.open_float(app.shift.shift_id, amount, currency,
                                                     by=app.cashier.cashier_id)
        except Exception as e:
            self.post_message(Loaded("float", error=e))
            return
        self.post_message(Loaded("float", drawer))

    def on_loaded(self, msg: Loaded) -> None:
        if msg.error is not None:
            self.query_one("#float-message", Static).update(error_text(msg.error))
            return
        self.dismiss(msg.data)

    def action_cancel(self) -> None:
        self.dismiss(None)


class DrawerCountScreen(CounterModal):
    """Pieces per note and coin; the total, what the drawer should hold, and the difference."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("f5", "save", "Record the count", priority=True)]

    def __init__(self) -> None:
        super().__init__()
        self.currency = ""  # the counter's, once the app is reachable (compose)
        self.expected: int | None = None

    def denominations(self) -> list[int]:
        return list(self.gapp.config.cash.denominations.get(self.currency, []))

    def compose(self) -> ComposeResult:
        self.currency = self.gapp.config.terminal.currency
        with Vertical(id="count-box", classes="box"):
            yield Static(t("Drawer count"), classes="big")
            with VerticalScroll(id="count-rows"):
                for d in self.denominations():
                    with Horizontal(classes="count-row"):
                        yield Label(shape(money(d, self.currency)), classes="count-label")
                        yield Input("0", id=f"n-{d}", restrict=r"[0-9]*", max_length=6, classes="count-input")
            yield Static("", id="count-total", classes="total")
            yield Static(t("F5: record the count · Esc: back"), classes="hint")
            yield Static("", id="count-message", classes="message", markup=False)

    def on_mount(self) -> None:
        super().on_mount()
        first = self.denominations()[:1]
        if first:
            self.query_one(f"#n-{first[0]}", Input).focus()
        self.load_expected()
        self.repaint()

    @work(thread=True, exit_on_error=False, group="drawer")
    def load_expected(self) -> None:
        app = self.gapp
        try:
            expected = app.backend.cashiers.expected_cash(app.shift.shift_id, app.backend.journal,
                                                          terminal_id=app.config.terminal.id)
        except Exception as e:
            self.post_message(Loaded("expected", error=e))
            return
        self.post_message(Loaded("expected", expected))

    def counts(self) -> dict[int, int]:
        out = {}
        for d in self.denominations():
            text = self.query_one(f"#n-{d}", Input).value.strip()
            out[d] = int(text) if text.isdigit() else 0
        return out

    def repaint(self) -> None:
        counted = count_total(self.counts())
        lines = [t("Counted: {amount}", amount=money(counted, self.currency))]
        if self.expected is not None:
            lines.append(t("Expected: {amount}", amount=money(self.expected, self.currency)))
            diff = counted - self.expected
            if diff:
                sign = "+" if diff > 0 else "-"
                lines.append(t("Difference: {sign}{amount}", sign=sign, amount=money(abs(diff), self.currency)))
            else:
                lines.append(t("The drawer is right"))
        self.query_one("#count-total", Static).update(shape("\n".join(lines)))

    @on(Input.Changed, ".count-input")
    def _changed(self) -> None:
        self.repaint()

    @on(Input.Submitted, ".count-input")
    def _next(self, event: Input.Submitted) -> None:
        self.focus_next()

    def action_save(self) -> None:
        self.save(self.counts(), None)

    @work(thread=True, exit_on_error=False, group="drawer")
    def save(self, counts: dict[int, int], accepted_by: Any) -> None:
        # accepted_by: the supervisor's Cashier as verify_supervisor returned it (PIN checked), or None.
        app = self.gapp
        try:
            drawer = app.backend.cashiers.count_drawer(
                app.shift.shift_id, counts, app.backend.journal, counted_by=app.cashier.cashier_id,
                accepted_by=accepted_by, denominations=self.denominations(), terminal_id=app.config.terminal.id,
            )
        except Exception as e:
            self.post_message(Loaded("count", error=e))
            return
        self.post_message(Loaded("count", drawer))

    def on_loaded(self, msg: Loaded) -> None:
        from agent.cashiers.shifts import DrawerDifference

        if msg.what == "expected":
            if msg.error is not None:
                self.query_one("#count-message", Static).update(error_text(msg.error))
            else:
                self.expected = msg.data
                self.repaint()
            return
        if isinstance(msg.error, DrawerDifference):
            self.expected = msg.error.expected
            self.repaint()
            self.ask_supervisor(msg.error.difference)
            return
        if msg.error is not None:
            self.query_one("#count-message", Static).update(error_text(msg.error))
            return
        self.dismiss(msg.data)

    def ask_supervisor(self, difference: int) -> None:
        from ui.screens.supervisor import SupervisorScreen

        self.query_one("#count-message", Static).update(
            t("A difference of {amount}: a supervisor must accept it",
              amount=("+" if difference > 0 else "-") + money(abs(difference), self.currency))
        )
        counts = self.counts()

        def then(who: Any) -> None:
            if who is not None:
                self.save(counts, who)

        self.app.push_screen(SupervisorScreen(), then)

    def action_cancel(self) -> None:
        self.dismiss(None)

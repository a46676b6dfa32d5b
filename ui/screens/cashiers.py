"""Cashier accounts (F12, supervisors): list, add, unlock, reset a PIN, disable or enable again.

    app.push_screen(CashiersScreen(actor=supervisor))   # after the supervisor's PIN (ui.app.open_cashiers)

Every change goes through agent.cashiers.CashierStore in a thread worker (argon2id hashing takes a good
part of a second) and is recorded in the accounts' audit trail with the supervisor who made it; the
selected account's recent events are shown under the table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, Static

from ui import i18n
from ui.i18n import N_, _, shape, t
from ui.messages import Loaded
from ui.plain import plain
from ui.screens.base import CounterScreen
from ui.text import error_text, local_hm, local_when

EVENT_LABELS = {
    "created": N_("account created"),
    "login": N_("logged in"),
    "login_failed": N_("wrong PIN"),
    "locked": N_("locked"),
    "unlocked": N_("unlocked"),
    "pin_changed": N_("PIN changed"),
    "disabled": N_("disabled"),
    "enabled": N_("enabled again"),
    "shift_opened": N_("shift opened"),
    "shift_closed": N_("shift closed"),
}

ROLE_LABELS = {"cashier": N_("Cashier"), "supervisor": N_("Supervisor")}

PIN_LENGTH = 8  # agent.cashiers.PIN_MAX: the fields take no more


def account_state(c: Any, now: datetime | None = None) -> str:
    """active / locked until HH:MM / disabled, translated (logical order)."""
    if not c.active:
        return _("disabled")
    if c.locked_until:
        until = datetime.fromisoformat(c.locked_until.replace("Z", "+00:00"))
        if until > (now or datetime.now(UTC)):
            return _("locked until {hm}").format(hm=local_hm(until))
    return _("active")


class CashiersScreen(CounterScreen):
    TITLE_TEXT = "Cashier accounts"
    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self, actor: Any) -> None:
        super().__init__()
        self.actor = actor  # the supervisor who opened the screen: every change is recorded under this id
        self.rows: list[Any] = []
        self.events: list[dict[str, Any]] = []
        self.selected_id: str | None = None
        self.message = ""
        self.message_kind = ""
        self.confirm_disable: str | None = None
        self.busy = False

    def body(self) -> ComposeResult:
        def row(*widgets: Widget, **kwargs: Any) -> Horizontal:
            # Right to left: the row reads from the right, like the table's columns.
            return Horizontal(*(reversed(widgets) if i18n.is_rtl() else widgets), **kwargs)

        with Vertical(id="cashiers-box"):
            yield DataTable(id="cashiers-table", cursor_type="row", zebra_stripes=True)
            yield Static(plain(self.events_text()), id="cashier-events", classes="panel")  # names: typed text
            yield row(
                Button(t("Unlock"), id="c-unlock"),
                Button(t("Reset the PIN"), id="c-reset"),
                Button(self.disable_label(), id="c-disable", variant="error"),
                classes="buttons",
            )
            yield Static(
                t("New account, or the new PIN for the selected one (4 to 8 digits, twice):"), classes="hint"
            )
            yield row(
                Input(id="c-id", placeholder=t("Cashier id"), max_length=32, restrict=r"[A-Za-z0-9._-]*"),
                Input(id="c-name", placeholder=t("Name"), max_length=64),
                Input(id="c-pin", placeholder=t("PIN"), password=True, restrict=r"\d*", max_length=PIN_LENGTH),
                Input(id="c-pin2", placeholder=t("PIN again"), password=True, restrict=r"\d*",
                      max_length=PIN_LENGTH),
                Checkbox(t("Supervisor"), id="c-supervisor"),
                Button(t("Add"), id="c-add", variant="primary"),
                id="cashier-form",
            )
            yield Static(plain(self.message), id="cashiers-message", classes=f"message {self.message_kind}")

    def keys_help(self) -> str:
        return t("Enter: select · Esc: back · every change is recorded under {who}", who=self.actor.cashier_id)

    def on_mount(self) -> None:
        self.load()
        self.query_one("#cashiers-table", DataTable).focus()

    # -- reading ------------------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="cashiers-load", exclusive=True)
    def load(self) -> None:
        try:
            self.post_message(Loaded("cashiers", self.gapp.backend.cashiers.list()))
        except Exception as e:
            self.post_message(Loaded("cashiers", error=e))

    @work(thread=True, exit_on_error=False, group="cashier-events", exclusive=True)
    def load_events(self, cashier_id: str) -> None:
        try:
            events = self.gapp.backend.cashiers.events(cashier_id, last=6)
        except Exception as e:
            self.post_message(Loaded("cashier-events", error=e))
            return
        self.post_message(Loaded("cashier-events", (cashier_id, events)))

    def on_loaded(self, msg: Loaded) -> None:
        if msg.what == "cashiers":
            if msg.error is not None:
                self.say(error_text(msg.error), "error")
                return
            self.rows = msg.data
            self.fill()
        elif msg.what == "cashier-events":
            if msg.error is None and msg.data[0] == self.selected_id:
                self.events = msg.data[1]
                self.query_one("#cashier-events", Static).update(plain(self.events_text()))
        elif msg.what == "cashier-done":
            self.busy = False
            if msg.error is not None:
                self.say(error_text(msg.error), "error")
                return
            kind, cashier = msg.data
            self.say(self.done_text(kind, cashier), "ok")
            if kind in ("added", "pin"):
                for field in ("#c-pin", "#c-pin2") + (("#c-id", "#c-name") if kind == "added" else ()):
                    self.query_one(field, Input).value = ""
                if kind == "added":
                    self.query_one("#c-supervisor", Checkbox).value = False
            self.selected_id = cashier.cashier_id
            self.load()

    def refill(self) -> None:
        self.fill()

    def fill(self) -> None:
        table = self.query_one("#cashiers-table", DataTable)
        table.clear(columns=True)
        cols = [t("Id"), t("Name"), t("Role"), t("State"), t("Wrong PINs")]
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for c in self.rows:
            row = [  # a name is what a supervisor typed: never markup (rich Text, not str)
                plain(c.cashier_id),
                plain(shape(c.name)),
                plain(shape(_(ROLE_LABELS.get(c.role, c.role)))),
                plain(shape(account_state(c))),
                plain(c.failed_attempts),
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row), key=c.cashier_id)
        ids = [c.cashier_id for c in self.rows]
        if self.selected_id in ids:
            table.move_cursor(row=ids.index(self.selected_id))
        elif ids:
            self.selected_id = ids[0]
        self.show_selected()

    @on(DataTable.RowHighlighted, "#cashiers-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            cid = self.rows[event.cursor_row].cashier_id
            if cid != self.selected_id:
                self.confirm_disable = None
            self.selected_id = cid
            self.show_selected()

    def selected(self) -> Any | None:
        return next((c for c in self.rows if c.cashier_id == self.selected_id), None)

    def show_selected(self) -> None:
        self.events = []
        self.query_one("#cashier-events", Static).update(plain(self.events_text()))
        self.query_one("#c-disable", Button).label = self.disable_label()
        if self.selected_id:
            self.load_events(self.selected_id)

    # -- texts --------------------------------------------------------------------------------------------

    def disable_label(self) -> str:
        c = self.selected()
        if c is not None and not c.active:
            return t("Enable again")
        return t("Press again to disable") if self.confirm_disable else t("Disable")

    def events_text(self) -> str:
        c = self.selected()
        if c is None:
            return t("No account selected")
        lines = [f"{c.cashier_id} · {c.name}"]
        for e in self.events:
            when = local_when(e["at"])
            what = _(EVENT_LABELS.get(e["kind"], e["kind"]))
            who = e["actor"] or ""
            lines.append(f"  {when}  {what}" + (f" · {_('by {who}').format(who=who)}" if who else ""))
        return shape("\n".join(lines))

    def done_text(self, kind: str, c: Any) -> str:
        texts = {
            "added": _("Account {id} created"),
            "unlocked": _("Account {id} unlocked"),
            "pin": _("New PIN set for {id}"),
            "disabled": _("Account {id} disabled: it can no longer log in"),
            "enabled": _("Account {id} enabled again"),
        }
        return shape(texts[kind].format(id=c.cashier_id))

    def say(self, text: str, kind: str = "") -> None:
        self.message, self.message_kind = text, kind
        msg = self.query_one("#cashiers-message", Static)
        msg.update(plain(text))  # may quote what was typed or stored
        msg.set_classes(f"message {kind}")

    # -- actions ------------------------------------------------------------------------------------------

    def new_pin(self) -> str | None:
        pin = self.query_one("#c-pin", Input).value
        if pin != self.query_one("#c-pin2", Input).value:
            self.say(t("The two PINs differ: type the same PIN twice"), "error")
            self.query_one("#c-pin2", Input).focus()
            return None
        return pin

    @on(Button.Pressed, "#c-add")
    @on(Input.Submitted, "#c-pin2")
    def _add(self) -> None:
        cid = self.query_one("#c-id", Input).value.strip()
        name = self.query_one("#c-name", Input).value.strip()
        if not cid:
            self.say(t("Type the new account's id"), "error")
            self.query_one("#c-id", Input).focus()
            return
        pin = self.new_pin()
        if pin is None:
            return
        role = "supervisor" if self.query_one("#c-supervisor", Checkbox).value else "cashier"
        self.run_change("added", cid, name=name, pin=pin, role=role)

    @on(Button.Pressed, "#c-unlock")
    def _unlock(self) -> None:
        c = self.selected()
        if c is not None:
            self.run_change("unlocked", c.cashier_id)

    @on(Button.Pressed, "#c-reset")
    def _reset(self) -> None:
        c = self.selected()
        if c is None:
            return
        pin = self.new_pin()
        if pin is None:
            return
        if not pin:
            self.say(t("Type the new PIN twice in the fields below"), "error")
            self.query_one("#c-pin", Input).focus()
            return
        self.run_change("pin", c.cashier_id, pin=pin)

    @on(Button.Pressed, "#c-disable")
    def _disable(self) -> None:
        c = self.selected()
        if c is None:
            return
        if not c.active:
            self.run_change("enabled", c.cashier_id)
            return
        if self.confirm_disable != c.cashier_id:  # a second press confirms
            self.confirm_disable = c.cashier_id
            self.query_one("#c-disable", Button).label = self.disable_label()
            self.say(t("Press again to disable {id}: it will no longer log in", id=c.cashier_id), "warning")
            return
        self.confirm_disable = None
        self.run_change("disabled", c.cashier_id)

    def run_change(self, kind: str, cashier_id: str, **kwargs: Any) -> None:
        if self.busy:
            return
        self.busy = True
        self.say(t("Saving…"))
        self.change(kind, cashier_id, **kwargs)

    @work(thread=True, exit_on_error=False, group="cashier-change")
    def change(self, kind: str, cashier_id: str, **kwargs: Any) -> None:
        store = self.gapp.backend.cashiers
        actor = self.actor.cashier_id
        try:
            if kind == "added":
                c = store.add(cashier_id, kwargs["name"], kwargs["pin"], role=kwargs["role"], actor=actor)
            elif kind == "unlocked":
                store.unlock(cashier_id, actor=actor)
                c = store.get(cashier_id)
            elif kind == "pin":
                store.set_pin(cashier_id, kwargs["pin"], actor=actor)
                c = store.get(cashier_id)
            elif kind == "disabled":
                c = store.disable(cashier_id, actor=actor)
            else:
                c = store.enable(cashier_id, actor=actor)
        except KeyError:
            self.post_message(Loaded("cashier-done", error=LookupError(f"cashier_id: {cashier_id} does not exist")))
            return
        except Exception as e:
            self.post_message(Loaded("cashier-done", error=e))
            return
        self.post_message(Loaded("cashier-done", (kind, c)))

    def action_back(self) -> None:
        self.app.pop_screen()

"""The Z report of the open shift (F7), and closing the shift.

Totals come from the journal (agent.cashiers.z_report): per method, per cashier, online vs offline,
declined/cancelled counts, the cash stamp duty apart, and the payments needing attention. Closing keeps the
report with the shift in cashiers.db and logs the cashier out.

O enters the drawer's opening float, D counts the drawer (ui/screens/drawer.py); C is the day's close
(ui/screens/dayclose.py), for a supervisor.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Static

from ui.formatting import number
from ui.i18n import _, shape, t
from ui.messages import Loaded
from ui.screens.base import CounterScreen
from ui.text import error_text, local_hm, local_when, method_label, money, notice_label, state_label


def _totals(tot: Any) -> str:
    amounts = tot["amounts"] if isinstance(tot, dict) else tot.amounts
    count = tot["count"] if isinstance(tot, dict) else tot.count
    money_text = ", ".join(money(v, c) for c, v in sorted(amounts.items())) or "0"
    return f"{number(count, min(amounts, default=None))} × · {money_text}"  # grouped as its amounts are


def report_text(rep: dict[str, Any]) -> str:
    """A Z report dict (ZReport.to_dict()) as lines, in the current language (logical order)."""
    lines = [
        f"{_('Z report')} · {rep['terminal_id']}",
        f"{_('From')} {local_when(rep['since'])} {_('to')} {local_when(rep['until'])}",
        "",
        f"{_('Total taken')}: {_totals(rep['total'])}",
        "",
        _("Per method") + ":",
    ]
    for m, tot in sorted(rep["by_method"].items()):
        lines.append(f"  {method_label(m)}: {_totals(tot)}")
    lines.append(_("Per cashier") + ":")
    for c, tot in sorted(rep["by_cashier"].items()):
        lines.append(f"  {c}: {_totals(tot)}")
    lines += [
        f"{_('Online')}: {_totals(rep['online'])}",
        f"{_('Offline')}: {_totals(rep['offline'])}",
        f"{_('Not yet sent')}: {_totals(rep['unsent'])}",
        f"{_('Declined')}: {rep['declined']}   {_('Cancelled')}: {rep['cancelled']}",
    ]
    duty = rep.get("stamp_duty") or {}
    if duty:
        lines.append(f"{_('Stamp duty (apart)')}: " + ", ".join(money(v, c) for c, v in sorted(duty.items())))
    drawer = rep.get("drawer")
    if drawer:
        cur = drawer["currency"]
        lines.append(f"{_('Opening float')}: {money(drawer['opening_float'], cur)}")
        if drawer.get("counted") is not None:
            lines.append(f"{_('Drawer counted')}: {money(drawer['counted'], cur)}   "
                         f"{_('Expected')}: {money(drawer['expected'], cur)}")
            if drawer.get("difference"):
                diff = drawer["difference"]
                lines.append(f"{_('Difference')}: {'+' if diff > 0 else '-'}{money(abs(diff), cur)}   "
                             f"{_('accepted by')} {drawer.get('accepted_by') or '-'}")
    lines += [
        "",
        f"{_('Needs attention')}: {len(rep['needs_attention'])}",
    ]
    for item in rep["needs_attention"]:
        why = notice_label(item["notice"]) if item.get("notice") else state_label(item["state"])
        lines.append(
            f"  {item['receipt_number']}  {item['bill_reference']}  {money(item['amount'], item['currency'])}  {why}"
        )
    return "\n".join(lines)


class ZReportScreen(CounterScreen):
    TITLE_TEXT = "Z report"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("o", "opening_float", "Opening float"),
        Binding("d", "count_drawer", "Count the drawer"),
        Binding("c", "day_close", "Day close"),
        Binding("p", "print_report", "Print"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.report: dict[str, Any] | None = None
        self.closed = False
        self.confirming = False

    def body(self) -> ComposeResult:
        shift = self.gapp.shift
        with Vertical(id="z-box"):
            opened = local_hm(shift.opened_at) if shift else "-"
            yield Static(t("Shift opened at {hm}", hm=opened), classes="hint")
            yield Static(t("O: opening float · D: count the drawer · C: day close (supervisor)"), classes="hint")
            yield Static(t("P: print the report"), classes="hint")
            with VerticalScroll():
                yield Static(shape(report_text(self.report)) if self.report else t("Computing…"), id="z-text",
                             markup=False)  # bill references and errors from the server
            with Horizontal(classes="buttons"):
                yield Button(
                    t("Log out") if self.closed else t("Close the shift"),
                    id="z-close",
                    variant="warning",
                )
            yield Static("", id="z-message", classes="message", markup=False)

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exit_on_error=False, group="z", exclusive=True)
    def load(self) -> None:
        app = self.gapp
        try:
            rep = app.backend.cashiers.shift_report(
                app.shift.shift_id, app.backend.journal, terminal_id=app.config.terminal.id, now=app.clock()
            )
            drawer = app.backend.cashiers.drawer(app.shift.shift_id)
            if drawer is not None:
                rep.drawer = {"currency": drawer.currency, "opening_float": drawer.opening_float,
                              "counted": drawer.counted, "expected": drawer.expected,
                              "difference": drawer.difference, "accepted_by": drawer.accepted_by}
        except Exception as e:
            self.post_message(Loaded("z", error=e))
            return
        self.post_message(Loaded("z", rep.to_dict()))

    @work(thread=True, exit_on_error=False, group="z", exclusive=True)
    def close_shift(self) -> None:
        app = self.gapp
        try:
            rep = app.backend.cashiers.close_shift(
                app.shift.shift_id,
                app.backend.journal,
                closed_by=app.cashier.cashier_id,
                terminal_id=app.config.terminal.id,
            )
        except Exception as e:
            self.post_message(Loaded("z-closed", error=e))
            return
        self.post_message(Loaded("z-closed", rep.to_dict()))

    def on_loaded(self, msg: Loaded) -> None:
        if msg.error is not None:
            self.query_one("#z-message", Static).update(error_text(msg.error))
            return
        if msg.what == "z-print":
            outcome = msg.data
            self.query_one("#z-message", Static).update(
                t("Printed") if outcome.state == "printed"
                else t("No receipt printer is configured") if outcome.state == "off"
                else t("Waiting for the printer: {problem}. It prints when the printer is back.",
                       problem=outcome.message))
            return
        self.report = msg.data
        self.query_one("#z-text", Static).update(shape(report_text(msg.data)))
        if msg.what == "z-closed":
            self.closed = True
            self.query_one("#z-close", Button).label = t("Log out")
            self.query_one("#z-message", Static).update(t("Shift closed."))

    @on(Button.Pressed, "#z-close")
    def _close(self) -> None:
        if self.closed:
            self.gapp.shift = None
            self.gapp.action_logout()
            return
        if not self.confirming:
            self.confirming = True
            self.query_one("#z-message", Static).update(t("Press again to close the shift"))
            return
        self.close_shift()

    def action_print_report(self) -> None:
        if self.report is not None:
            self.print_report(self.report)

    @work(thread=True, exit_on_error=False, group="z-print", exclusive=True)
    def print_report(self, rep: dict[str, Any]) -> None:
        """On the receipt printer, in the counter's language; paper out: queued, printed when it is back."""
        from ui.i18n import language
        from ui.receipt import print_blocks
        from ui.receipts.render import Row

        rows = [Row("title", line) if i == 0 else Row("text", line) if line else Row("space")
                for i, line in enumerate(report_text(rep).splitlines())]
        name = f"Z {rep.get('terminal_id', '')} {rep.get('until', '')}"
        outcome = print_blocks(self.gapp.config, name, [(language(), rows)])
        self.post_message(Loaded("z-print", outcome))

    def _reload(self, _drawer: Any) -> None:
        self.load()

    def action_opening_float(self) -> None:
        if self.closed or self.gapp.shift is None:
            return
        from ui.screens.drawer import OpeningFloatScreen

        self.app.push_screen(OpeningFloatScreen(), self._reload)

    def action_count_drawer(self) -> None:
        if self.closed or self.gapp.shift is None:
            return
        from ui.screens.drawer import DrawerCountScreen

        self.app.push_screen(DrawerCountScreen(), self._reload)

    def action_day_close(self) -> None:
        from ui.screens.dayclose import DayCloseScreen

        cashier = self.gapp.cashier
        if cashier is not None and cashier.is_supervisor:
            self.app.push_screen(DayCloseScreen(cashier.cashier_id))
            return
        from ui.screens.supervisor import SupervisorScreen

        def then(who: Any) -> None:
            if who is not None:
                self.app.push_screen(DayCloseScreen(who.cashier_id))

        self.app.push_screen(SupervisorScreen(), then)

    def action_back(self) -> None:
        if not self.closed:
            self.app.pop_screen()

"""The day's close, for a supervisor (Z report, C): the journal's day against the billing server's business day
and the TPE's totals typed from its end-of-day ticket. Each run is kept (agent.dayclose.DayCloseStore) and can
be exported as CSV and JSON for the accounting office (E: into <state dir>/dayclose/).

    app.push_screen(DayCloseScreen("s0001"))

The close itself (journal read, server pages) runs in a worker; offline it says so and what it could not check.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Label, Static

from config.money import MoneyError, parse_amount
from ui import i18n
from ui.i18n import shape, t
from ui.messages import Loaded
from ui.screens.base import CounterScreen
from ui.text import error_text, money

# Line kinds as the supervisor reads them (agent.dayclose.reconcile.KINDS).
KIND_LABELS = {
    "matched": "matched",
    "queued": "still queued here",
    "unknown": "outcome unknown here",
    "rejected": "rejected by the server",
    "different": "amount or bill different",
    "server_only": "ON THE SERVER, NOT HERE",
    "missing_on_server": "uploaded, not on the server",
    "not_checked": "not checked (offline)",
    "not_taken": "declined or cancelled",
}


def summary_text(data: dict[str, Any]) -> str:
    """The verdict and the totals of a close (DayClose.to_dict()), in the current language."""
    lines = [t("Day {day}", day=data["day"])]
    if not data["online"]:
        lines.append(t("OFFLINE: the billing server could not be asked"))
    lines.append(t("Clean: nothing to look at") if data["clean"] else t("{n} to look at", n=data["problems"]))
    lines.append(" · ".join(f"{t(KIND_LABELS.get(k, k))}: {n}" for k, n in data["kinds"].items()))

    def amounts(values: dict[str, int]) -> str:
        return ", ".join(money(v, c) for c, v in sorted(values.items())) or "0"

    j = data["journal"]
    lines.append(t("Journal: {n} payments, {amount}, stamp duty {duty}", n=j["count"], amount=amounts(j["amount"]),
                   duty=amounts(j["stamp_duty"])))
    for m, tot in sorted(data["by_method"].items()):
        lines.append(f"  {m}: {tot['count']} · {amounts(tot['amount'])}")
    for c, tot in sorted(data["by_cashier"].items()):
        lines.append(f"  {c}: {tot['count']} · {amounts(tot['amount'])}")
    if data["online"]:
        s = data["server"]
        lines.append(t("Server: {n} payments, {amount}, stamp duty {duty}", n=s["count"],
                       amount=amounts(s["amount"]), duty=amounts(s["stamp_duty"])))
    check = data.get("totals_check")
    if check and not check["agrees"]:
        lines.append(t("The journal's totals and the server's DIFFER: {jn} and {sn} payments, server - journal"
                       " {amount}", jn=check["journal_count"], sn=check["server_count"],
                       amount=amounts(check["difference"])))
    tpe = data.get("tpe")
    if tpe:
        verdict = t("agrees") if tpe["agrees"] else t("DIFFERS")
        lines.append(t("TPE ticket: {n} payments, {amount}; journal {jn}, {jamount}: {verdict}", n=tpe["count"],
                       amount=amounts(tpe["amount"]), jn=tpe["journal_count"],
                       jamount=amounts(tpe["journal_amount"]), verdict=verdict))
    for what in data["unchecked"]:
        lines.append(t("Not checked: {what}", what=what))
    return "\n".join(lines)


class DayCloseScreen(CounterScreen):
    TITLE_TEXT = "Day close"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("f5", "run", "Run the close", priority=True),
        Binding("ctrl+e", "export", "Export CSV and JSON", priority=True),
        Binding("ctrl+p", "print_close", "Print", priority=True),
    ]

    def __init__(self, supervisor_id: str) -> None:
        super().__init__()
        self.supervisor_id = supervisor_id
        self.data: dict[str, Any] | None = None
        self.running = False

    def body(self) -> ComposeResult:
        with Vertical(id="dayclose-box"):
            with Horizontal(classes="buttons"):
                yield Label(t("TPE ticket: payments"))
                yield Input(id="tpe-count", restrict=r"[0-9]*", max_length=6)
                yield Label(t("total"))
                yield Input(id="tpe-amount", restrict=r"[0-9.,]*", max_length=19)
                yield Button(t("Run (F5)"), id="dayclose-run", variant="success")
            yield Static(t("Concert E+ gives no totals: type those printed on the TPE's end-of-day ticket, or leave"
                           " them empty. Ctrl+E exports the last run, Ctrl+P prints it."), classes="hint")
            with VerticalScroll():
                yield Static(shape(summary_text(self.data)) if self.data else "", id="dayclose-summary", markup=False)
                yield DataTable(id="dayclose-lines", cursor_type="row", zebra_stripes=True)
            yield Static("", id="dayclose-message", classes="message", markup=False)

    def on_mount(self) -> None:
        self.query_one("#tpe-count", Input).focus()

    def refill(self) -> None:
        self.fill()

    def tpe_totals(self) -> Any:
        from agent.dayclose import TpeTotals

        count = self.query_one("#tpe-count", Input).value.strip()
        amount = self.query_one("#tpe-amount", Input).value.strip()
        if not count and not amount:
            return None
        if not count or not amount:
            raise MoneyError(t("TPE ticket: give the number of payments and their total, or neither"))
        currency = self.gapp.config.terminal.currency
        return TpeTotals(int(count), {currency: parse_amount(amount, currency)}, entered_by=self.supervisor_id)

    @on(Button.Pressed, "#dayclose-run")
    def action_run(self) -> None:
        if self.running:
            return
        try:
            tpe = self.tpe_totals()
        except MoneyError as e:
            self.query_one("#dayclose-message", Static).update(error_text(e))
            return
        self.running = True
        self.query_one("#dayclose-message", Static).update(t("Closing the day…"))
        self.run_close(tpe)

    @work(thread=True, exit_on_error=False, group="dayclose", exclusive=True)
    def run_close(self, tpe: Any) -> None:
        from agent.dayclose import DayCloseStore, close_day

        backend = self.gapp.backend
        try:
            report = close_day(self.gapp.config, backend.journal, backend.client, tpe=tpe)
            with DayCloseStore.open(backend.state_dir) as store:
                run_id = store.save(report, run_by=self.supervisor_id)
        except Exception as e:
            self.post_message(Loaded("dayclose", error=e))
            return
        self.post_message(Loaded("dayclose", {**report.to_dict(), "run_id": run_id}))

    def on_loaded(self, msg: Loaded) -> None:
        message = self.query_one("#dayclose-message", Static)
        if msg.what == "dayclose":
            self.running = False
            if msg.error is not None:
                message.update(error_text(msg.error))
                return
            self.data = msg.data
            self.fill()
            message.update(t("Run {n} kept", n=msg.data["run_id"]))
        elif msg.what == "dayclose-print":
            if msg.error is not None:
                message.update(error_text(msg.error))
            elif msg.data is True:
                message.update(t("Printed"))
            else:  # queued: the print-queue job prints it when the printer is back
                message.update(t("Waiting for the printer: {problem}. It prints when the printer is back.",
                                 problem=str(msg.data or "")))
        elif msg.what == "dayclose-export":
            message.update(error_text(msg.error) if msg.error is not None else t("Exported: {path}", path=msg.data))

    def fill(self) -> None:
        if self.data is None:
            return
        self.query_one("#dayclose-summary", Static).update(shape(summary_text(self.data)))
        table = self.query_one("#dayclose-lines", DataTable)
        table.clear(columns=True)
        cols = [t("What"), t("Receipt"), t("Bill"), t("Amount"), t("Method"), t("Cashier"), t("Detail")]
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for line in self.data["lines"]:
            row = [  # the server's text (bill, receipt, detail): never markup
                Text(shape(t(KIND_LABELS.get(line["kind"], line["kind"])))),
                Text(line["receipt_number"] or "-"),
                Text(line["bill_reference"]),
                Text(shape(money(line["amount"], line["currency"])) if line["currency"] else str(line["amount"])),
                Text(line["method"]),
                Text(line["cashier_id"]),
                Text(line["detail"][:60]),
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row))

    def action_export(self) -> None:
        if self.data is not None:
            self.export(self.data)

    @work(thread=True, exit_on_error=False, group="dayclose-export")
    def export(self, data: dict[str, Any]) -> None:
        from agent.dayclose import to_csv, to_json
        from agent.storage import ensure_state_dir

        try:
            folder = ensure_state_dir(self.gapp.backend.state_dir / "dayclose")
            base = folder / f"dayclose-{data['terminal_id']}-{data['day']}-{data['run_id']}"
            base.with_suffix(".csv").write_text(to_csv(data), encoding="utf-8")
            base.with_suffix(".json").write_text(to_json(data), encoding="utf-8")
        except Exception as e:
            self.post_message(Loaded("dayclose-export", error=e))
            return
        self.post_message(Loaded("dayclose-export", str(base) + ".csv/.json"))

    def action_print_close(self) -> None:
        if self.data is not None:
            self.print_close(self.data)

    @work(thread=True, exit_on_error=False, group="dayclose-print", exclusive=True)
    def print_close(self, data: dict[str, Any]) -> None:
        """Printed now, or queued for the print-queue job when the printer is not ready (never lost)."""
        from agent.dayclose.export import paper_lines
        from drivers.printer import PrinterUnavailable
        from ui.receipt import print_lines

        cfg = self.gapp.config
        try:
            if cfg.printer.url in ("", "none"):
                raise PrinterUnavailable(t("no receipt printer is configured (printer.url)"))
            outcome = print_lines(cfg, f"Z {data.get('day', '')}", paper_lines(data, cfg.printer.paper))
            if outcome.state == "failed":
                raise PrinterUnavailable(outcome.message)
        except Exception as e:
            self.post_message(Loaded("dayclose-print", error=e))
            return
        self.post_message(Loaded("dayclose-print", True if outcome.state == "printed" else outcome.message))

    def action_back(self) -> None:
        self.app.pop_screen()

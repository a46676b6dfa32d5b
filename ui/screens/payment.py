"""Take a payment: reference -> bill(s) in a basket -> amount -> method -> wait panel -> receipt.

Cash: the stamp duty (`[cash.stamp_duty]`, agent.cash) is shown with the total before payment, and the
amount tendered gives the change due; less than the total to collect is refused before anything is written.

A barcode scanner types like a keyboard (a fast burst of digits, then Enter): digits typed while the
focus is elsewhere go to the reference field, so a scan always lands there.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Key
from textual.widgets import Button, DataTable, Input, Label, RadioButton, RadioSet, Static

from agent.cash import CashDue, basket_due
from config.money import MoneyError, format_amount, parse_amount
from ui import i18n
from ui.i18n import _, shape, t
from ui.messages import LookupResult
from ui.screens.base import CounterScreen
from ui.text import BILL_STATUS_LABELS, SERVICE_LABELS, age_text, error_text, method_label, money
from ui.widgets.bidi_static import BidiStatic
from ui.widgets.scan_input import ScanInput


class PaymentScreen(CounterScreen):
    TITLE_TEXT = "Payment"

    BINDINGS = [
        Binding("f5", "pay", "Pay", priority=True),
        Binding("f9", "add_others", "Add the other bills"),
        Binding("escape", "clear", "New payment"),
        Binding("ctrl+d", "remove_last", "Remove the last bill"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.basket: list[Any] = []  # agent.bills.Bill
        self.others: list[Any] = []
        self.message = ""
        self.message_kind = ""
        self.reference = ""
        self.amount_text = ""
        self.method: str | None = None
        self.looking_up = False
        self.pay_pending = False  # F5 pressed while the lookup was still running
        self.tendered_text = ""
        self.change_after = 0  # the change due of the payment on its way (cash, amount tendered)

    # -- layout -------------------------------------------------------------------------------------------

    def body(self) -> ComposeResult:
        methods = self.gapp.backend.methods()
        if self.method not in methods:
            self.method = methods[0] if methods else None
        left = Vertical(
            Label(t("Bill reference (scan or type, then Enter)")),
            # A scanner left in US mode types AZERTY's digit row: ScanInput reads it as digits.
            ScanInput(self.reference, id="reference", placeholder=t("12 digits"), restrict=r"[A-Za-z0-9]*",
                      max_length=40),
            Static(self.bill_text(), id="bill", classes="panel", markup=False),  # server text
            DataTable(id="basket", cursor_type="row", zebra_stripes=True),
            Static(self.others_text(), id="others", classes="hint", markup=False),
            id="pay-left",
        )
        right = Vertical(
            Label(t("Amount")),
            Input(
                self.amount_text or self.default_amount_text(),
                id="amount",
                disabled=not self.partial_allowed(),
                restrict=r"[0-9.,]*",
                max_length=19,
            ),
            BidiStatic(self.total_text(), id="total", classes="total", markup=False),  # Arabic wraps in order
            Label(t("Method")),
            RadioSet(
                *(RadioButton(shape(method_label(m)), value=(m == self.method), name=m) for m in methods),
                id="method",
            ),
            Vertical(
                Label(t("Amount tendered")),
                Input(self.tendered_text, id="tendered", restrict=r"[0-9.,]*", max_length=19),
                Static(self.change_text(), id="change", classes="total", markup=False),
                id="cash-box",
                classes="panel",
            ),
            Button(t("Pay (F5)"), id="pay", variant="success", disabled=not self.basket),
            BidiStatic(self.message, id="message", classes=f"message {self.message_kind}", markup=False),
            id="pay-right",
        )
        # Right to left: the bill (what the cashier reads first) sits on the right.
        yield Horizontal(*((right, left) if i18n.is_rtl() else (left, right)), id="pay-main")
        if self.gapp.demo is not None:
            from ui.widgets.demo_panel import DemoPanel

            yield DemoPanel(self.gapp.demo)

    def on_mount(self) -> None:
        self.fill_basket()
        self.query_one("#cash-box").display = self.method == "cash"
        self.query_one("#reference", Input).focus()

    def refill(self) -> None:
        self.fill_basket()

    def fill_basket(self) -> None:
        table = self.query_one("#basket", DataTable)
        table.clear(columns=True)
        cols = [t("Reference"), t("Customer"), t("Service"), t("Period"), t("Due")]
        table.add_columns(*(reversed(cols) if i18n.is_rtl() else cols))
        for b in self.basket:
            row = [  # the server's text, never markup
                Text(b.reference),
                Text(shape(b.customer_name)),
                Text(t(SERVICE_LABELS.get(b.service, b.service))),
                Text(b.period),
                Text(shape(money(b.amount_due, b.currency))),
            ]
            table.add_row(*(reversed(row) if i18n.is_rtl() else row), key=b.reference)

    # -- texts --------------------------------------------------------------------------------------------

    def bill_text(self) -> str:
        if not self.basket:
            return t("No bill yet: scan the bill's barcode or type its reference.")
        b = self.basket[-1]
        lines = [
            f"{_('Customer')}: {b.customer_name}   ({b.customer_id})",
            f"{_('Contract')}: {b.contract}   {_('Service')}: {_(SERVICE_LABELS.get(b.service, b.service))}",
            f"{_('Period')}: {b.period}   {_('Due date')}: {b.due_on}",
            f"{_('Amount due')}: {money(b.amount_due, b.currency)}   "
            f"{_('Status')}: {_(BILL_STATUS_LABELS.get(b.status, b.status))}",
        ]
        if b.offline:
            age = age_text(b.cache_age) if b.cache_age is not None else "?"
            lines.append(_("From cache, {age} old: the server cannot be reached").format(age=age))
        return shape("\n".join(lines))

    def others_text(self) -> str:
        if not self.others:
            return ""
        total = sum(b.amount_due for b in self.others)
        cur = self.others[0].currency
        return t(
            "This customer has {n} other unpaid bills ({total}): F9 adds them",
            n=len(self.others),
            total=money(total, cur),
        )

    def partial_allowed(self) -> bool:
        return bool(self.gapp.config.payments.allow_partial and len(self.basket) == 1)

    def total_due(self) -> int:
        return sum(b.amount_due for b in self.basket)

    def currency(self) -> str:
        return self.basket[0].currency if self.basket else self.gapp.config.terminal.currency

    def default_amount_text(self) -> str:
        return format_amount(self.total_due(), self.currency()) if self.basket else ""

    def paying(self) -> list[int]:
        """The amount per bill as it would be paid now (the partial amount typed, when allowed and valid)."""
        if self.partial_allowed() and self.amount_text:
            try:
                amount = parse_amount(self.amount_text, self.currency())
            except MoneyError:
                amount = 0
            if 0 < amount <= self.total_due():
                return [amount]
        return [b.amount_due for b in self.basket]

    def due(self) -> CashDue:
        """What the customer pays by the chosen method: amounts, stamp duty (cash), total. Pure: no I/O."""
        return basket_due(self.paying(), self.method or "", self.gapp.config.cash.stamp_duty)

    def total_text(self) -> str:
        if not self.basket:
            return ""
        due = self.due()
        text = t("Total: {total} ({n} bills)", total=money(due.subtotal, self.currency()), n=len(self.basket))
        if due.duty:
            text += "\n" + t("Stamp duty: {duty} · to collect: {total}", duty=money(due.duty, self.currency()),
                             total=money(due.total, self.currency()))
        return text

    def tendered(self) -> int | None:
        """The amount tendered in minor units, None when empty; MoneyError when not an amount."""
        if not self.tendered_text.strip():
            return None
        return parse_amount(self.tendered_text, self.currency())

    def change_text(self) -> str:
        if not self.basket or self.method != "cash":
            return ""
        try:
            tendered = self.tendered()
        except MoneyError as e:
            return error_text(e)
        if tendered is None:
            return ""
        total = self.due().total
        if tendered < total:
            return t("Missing: {amount}", amount=money(total - tendered, self.currency()))
        return t("Change due: {amount}", amount=money(tendered - total, self.currency()))

    def repaint_due(self) -> None:
        self.query_one("#total", Static).update(self.total_text())
        self.query_one("#change", Static).update(self.change_text())
        self.query_one("#cash-box").display = self.method == "cash"

    def show(self, text: str, kind: str = "") -> None:
        self.message, self.message_kind = text, kind
        msg = self.query_one("#message", Static)
        msg.update(text)
        msg.set_classes(f"message {kind}")

    def repaint(self) -> None:
        self.query_one("#bill", Static).update(self.bill_text())
        self.query_one("#others", Static).update(self.others_text())
        self.query_one("#total", Static).update(self.total_text())
        amount = self.query_one("#amount", Input)
        amount.disabled = not self.partial_allowed()
        self.amount_text = ""
        amount.value = self.default_amount_text()
        self.query_one("#pay", Button).disabled = not self.basket
        self.tendered_text = ""
        self.query_one("#tendered", Input).value = ""
        self.repaint_due()
        self.fill_basket()

    # -- input --------------------------------------------------------------------------------------------

    def on_key(self, event: Key) -> None:
        # A scan while the focus is on the basket or a button still lands in the reference field.
        focused = self.focused
        if event.character and event.character.isdigit() and not isinstance(focused, Input):
            ref = self.query_one("#reference", Input)
            ref.focus()
            ref.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    @on(Input.Changed, "#reference")
    def _keep_ref(self, event: Input.Changed) -> None:
        self.reference = event.value

    @on(Input.Changed, "#amount")
    def _keep_amount(self, event: Input.Changed) -> None:
        self.amount_text = event.value
        self.repaint_due()

    @on(Input.Changed, "#tendered")
    def _keep_tendered(self, event: Input.Changed) -> None:
        self.tendered_text = event.value
        self.query_one("#change", Static).update(self.change_text())

    @on(Input.Submitted, "#tendered")
    def _tendered_then_pay(self) -> None:
        self.action_pay()

    @on(RadioSet.Changed, "#method")
    def _keep_method(self, event: RadioSet.Changed) -> None:
        self.method = event.pressed.name
        self.repaint_due()

    @on(Input.Submitted, "#reference")
    def submit_reference(self, event: Input.Submitted) -> None:
        ref = event.value.strip()
        if not ref:
            if self.basket:
                self.action_pay()
            return
        if any(b.reference == ref for b in self.basket):
            self.show(t("Bill {ref} is already in the basket", ref=ref), "warning")
            event.input.value = ""
            return
        self.looking_up = True
        self.show(t("Looking up bill {ref}…", ref=ref))
        self.lookup(ref)

    @work(thread=True, exit_on_error=False, group="lookup", exclusive=True)
    def lookup(self, reference: str) -> None:
        flow = self.gapp.backend.flow
        try:
            bill = flow.lookup(reference)
        except Exception as e:
            self.post_message(LookupResult(reference, error=e))
            return
        try:
            others = flow.customer_bills(bill)
        except Exception:  # other bills are a convenience; the lookup itself succeeded
            others = []
        self.post_message(LookupResult(reference, bill, others))

    def on_lookup_result(self, msg: LookupResult) -> None:
        self.looking_up = False
        pay_now, self.pay_pending = self.pay_pending, False
        if msg.error is not None:
            self.show(error_text(msg.error), "error")
            return
        bill = msg.lookup
        self.gapp.note_lookup(not bill.offline)
        ref = self.query_one("#reference", Input)
        ref.value = ""
        if not bill.payable:
            self.show(
                t("Bill {ref}: nothing to pay (status: {status})", ref=bill.reference,
                  status=_(BILL_STATUS_LABELS.get(bill.status, bill.status))),
                "error",
            )
            return
        self.basket.append(bill)
        in_basket = {b.reference for b in self.basket}
        self.others = [b for b in msg.others if b.reference not in in_basket]
        self.show(t("Bill {ref} added", ref=bill.reference), "ok")
        self.repaint()
        ref.focus()
        if pay_now:  # scanned then F5 at once: pay what was asked for
            self.action_pay()

    def action_add_others(self) -> None:
        if not self.others:
            return
        self.basket.extend(self.others)
        self.others = []
        self.repaint()

    def action_remove_last(self) -> None:
        if self.basket:
            self.basket.pop()
            self.repaint()

    def action_clear(self) -> None:
        self.basket, self.others = [], []
        self.show("")
        self.repaint()
        self.query_one("#reference", Input).focus()

    # -- paying -------------------------------------------------------------------------------------------

    @on(Button.Pressed, "#pay")
    def action_pay(self) -> None:
        if self.looking_up:
            self.pay_pending = True
            return
        if not self.basket:
            return
        if self.method is None:
            self.show(t("No payment method is available on this counter"), "error")
            return
        amount: int | None = None
        if self.partial_allowed():
            text = self.query_one("#amount", Input).value
            try:
                amount = parse_amount(text, self.currency())
            except MoneyError as e:
                self.show(error_text(e), "error")
                return
            if amount == self.total_due():
                amount = None
        tendered: int | None = None
        if self.method == "cash":
            try:
                tendered = self.tendered()
            except MoneyError as e:
                self.show(error_text(e), "error")
                return
            total = self.due().total
            if tendered is not None and tendered < total:
                self.show(t("Amount tendered: {given} is less than the {total} to collect",
                            given=money(tendered, self.currency()), total=money(total, self.currency())), "error")
                return
        from ui.screens.wait import WaitScreen

        # What the wait panel shows as the amount to pay: with the stamp duty for cash (it is collected too).
        total = self.due().total if self.method == "cash" else amount if amount is not None else self.total_due()
        self.change_after = 0
        if self.method == "cash" and tendered is not None:
            self.change_after = tendered - self.due().total
        self.show("")
        self.app.push_screen(
            WaitScreen(list(self.basket), self.method, amount, total, self.currency()), self.paid
        )

    def paid(self, outcome: Any) -> None:
        """The wait panel closed with a PayResult or the exception the flow raised before writing."""
        if isinstance(outcome, BaseException):
            self.show(error_text(outcome), "error")
            return
        if outcome is None:
            return
        self.gapp.refresh_status()
        status = outcome.status
        if status == "approved":
            self.basket, self.others = [], []
            self.repaint()
            self.show(t("Approved: receipt {receipt}", receipt=outcome.receipt_number), "ok")
            if self.change_after:
                self.show(t("Approved: receipt {receipt} · change due: {change}", receipt=outcome.receipt_number,
                            change=money(self.change_after, outcome.payments[0].currency)), "ok")
            from ui.screens.receipt import ReceiptScreen

            self.app.push_screen(ReceiptScreen(outcome.payments))
        elif status == "declined":
            self.show(t("Declined: {reason}", reason=outcome.message or "-"), "error")
        elif status == "cancelled":
            self.show(t("Cancelled: nothing was charged"), "warning")
        else:
            self.basket, self.others = [], []
            self.repaint()
            self.show(
                t("Outcome unknown: check the terminal's ticket, then settle it (F6)"),
                "error",
            )
            self.gapp.action_goto("unknown")

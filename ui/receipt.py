"""The payment receipt as text, ready for a printer: masked card number, authorisation code, receipt number.

    text = receipt_text(payments, terminal_id="ORAN-07-G2", agency_id="ORAN-07")

`payments` are the journal rows of one transaction (one per bill). Never shows more of the card than
the journal holds (pan_masked: first 6 and last 4).
"""

from __future__ import annotations

from typing import Any

from ui.formatting import date_text
from ui.i18n import _
from ui.text import local_hm, method_label, money, parse_time, state_label, value

WIDTH = 42


def receipt_text(payments: list[Any], *, reprint: bool = False) -> str:
    """The receipt in the current language, logical order (shape() it for the screen)."""
    if not payments:
        return ""
    first = payments[0]
    cur = first.currency
    when = parse_time(first.captured_at)
    lines = [
        _("PAYMENT RECEIPT"),
        "=" * WIDTH,
        f"{_('Receipt')}: {first.receipt_number}",
        f"{_('Agency')}: {first.agency_id}   {_('Counter')}: {first.terminal_id}",
        f"{_('Date')}: {date_text(when) if when else '-'} {local_hm(first.captured_at)}",
        f"{_('Cashier')}: {first.cashier_id}",
        "-" * WIDTH,
    ]
    for p in payments:
        bill = p.bill or {}
        lines.append(f"{_('Bill')} {p.bill_reference}  {bill.get('period', '')}")
        if bill.get("customer_name"):
            lines.append(f"  {bill['customer_name']}  {bill.get('contract', '')}")
        lines.append(f"  {_('Paid')}: {money(p.amount, p.currency)}")
    lines += [
        "-" * WIDTH,
        f"{_('Total')}: {money(sum(p.amount for p in payments), cur)}",
        f"{_('Method')}: {method_label(first.method)}",
    ]
    card = first.card or {}
    if card:
        lines.append(f"{_('Card')}: {card.get('scheme', '')} {card.get('pan_masked', '')}")
    auth = first.authorization or {}
    if auth.get("code"):
        lines.append(f"{_('Authorisation code')}: {auth['code']}")
    state = value(first.state)
    lines.append(f"{_('Status')}: {state_label(state)}")
    if first.captured_offline:
        lines.append(_("Taken offline: will be sent to the billing server"))
    if reprint:
        lines.append(_("DUPLICATE"))
    lines.append("=" * WIDTH)
    return "\n".join(lines)

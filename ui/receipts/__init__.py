"""Printed receipts: the layout in the counter's languages, the bitmap, and the job sent to the printer.

    from ui.receipts import Receipt, ReceiptOptions, print_receipt, render
    receipt = Receipt.from_payments(payments, stamp_duty=500)
    options = ReceiptOptions.from_config(config)        # [printer] and [receipts]
    result = print_receipt(printer, receipt, options)   # drivers.printer.PrintResult; never raises
"""

from ui.receipts.model import BillLine, Receipt, safe_pan
from ui.receipts.printing import PreparedJob, prepare, print_receipt, print_rows
from ui.receipts.render import SHAPING, ReceiptOptions, Row, render, render_blocks, rows, seal_text, tr

__all__ = [
    "SHAPING",
    "BillLine",
    "PreparedJob",
    "Receipt",
    "ReceiptOptions",
    "prepare",
    "print_receipt",
    "print_rows",
    "Row",
    "render",
    "render_blocks",
    "rows",
    "safe_pan",
    "seal_text",
    "tr",
]

"""Run by pyTeliumManager's own virtualenv (not by pytest): one payment through the peer Concert client.

    python telium_client.py PATH BAUD FRAMING AMOUNT CURRENCY  ->  one JSON line
"""

from __future__ import annotations

import json
import sys
import time

from serial import EIGHTBITS, PARITY_EVEN, PARITY_NONE, SEVENBITS
from telium import Telium, TeliumAsk

path, baud, framing, amount, currency = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
bits = (SEVENBITS, PARITY_EVEN) if framing == "7E1" else (EIGHTBITS, PARITY_NONE)
device = Telium(path, baudrate=baud, bytesize=bits[0], parity=bits[1], timeout=3)
ready = device.is_ok()
ask = TeliumAsk.new_payment(amount, target_currency=currency, checkout_unique_id="1")
started = time.monotonic()
accepted = device.ask(ask)
answer = device.verify(ask, waiting_timeout=10) if accepted else None
elapsed = time.monotonic() - started
print(json.dumps({
    "ready": ready,
    "accepted": accepted,
    "succeeded": answer.has_succeeded if answer else None,
    "amount": answer.amount if answer else None,
    "report": answer.repport.strip() if answer else None,
    "currency": answer.currency_numeric if answer else None,
    "elapsed": elapsed,
}))

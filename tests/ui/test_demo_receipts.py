"""The demo's receipts come out of its virtual printer: a newcomer sees the paper the customer takes away."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.ui.test_demo import demo


def test_a_demo_payment_prints_its_receipt_on_the_virtual_printer(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    r = demo(tmp_path, "card insert cib\ntype {bill0}\npress enter f5\nwait ReceiptScreen\nexpect approved\nsleep 2\n",
             "--state-dir", str(state))
    assert r.returncode == 0, r.stderr + r.stdout
    number = json.loads(r.stdout)["payment"]["receipt_number"]
    paper = state / "receipts" / "paper"
    deadline = time.monotonic() + 10
    while not list(paper.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.1)
    pictures = list(paper.glob("*.png"))
    assert pictures, f"no receipt printed in {paper}"
    # The paper carries the payment's signed seal (the QR code): read back from the printed picture.
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    seals = [b.text for b in zxingcpp.read_barcodes(Image.open(pictures[0]))]
    assert any(f"R={number};" in s and "A=" in s and ";S=" in s for s in seals), seals

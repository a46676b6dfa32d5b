"""Receipt rendering and printing against the wire: `./dev bench receipt` (or `python -m bench receipt`).

A three-bill receipt paid by card, in French and Arabic (stacked and side by side, 80 mm = 576 dots), and
the same in French alone printed with the printer's font (`[printer] text = true`):
- render: Receipt -> 1-bit bitmap (ui.receipts.render), median of warm runs (target < 50 ms);
- bytes: our job (drivers.printer.raster: blank bands fed, margins trimmed) against python-escpos's own
  `image()` (GS v 0, every row at full width) of the same bitmap (target <= 0.5x);
- wire: those bytes at 19200 and 115200 baud (10 bits a byte), against the paper's time under a thermal head
  at 100 mm/s (8 dots/mm): target at 115200, wire <= head.
- end to end: the job through the driver to the virtual printer on tcp://127.0.0.1 (one process: the figure
  is our code's, loopback has no baud rate).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from drivers.printer import open_printer
from drivers.printer.raster import escpos_image
from sandbox.printer import VirtualPrinter
from ui.receipts import BillLine, Receipt, ReceiptOptions, prepare, render

KEY = b"bench-signing-key-0123456789abcdef"
HEAD_MM_S = 100.0
DOTS_PER_MM = 8.0
BAUDS = (19200, 115200)
RUNS = 30


def receipt() -> Receipt:
    bills = tuple(BillLine(f"SEOR-2026-00012{i}", amount, "2026-T3", "Benali Karim", "CT-77812")
                  for i, amount in enumerate((1127300, 345600, 98050), start=3))
    return Receipt(number="ORAN-07-G2-000043", agency_id="ORAN-07", terminal_id="ORAN-07-G2", cashier_id="c0007",
                   when=datetime(2026, 11, 30, 8, 14, tzinfo=UTC), currency="DZD", bills=bills,
                   method="card_reader", scheme="EDAHABIA", pan_masked="628058******1239", auth_code="0F4411")


def wire_s(n: int, baud: int) -> float:
    return n * 10 / baud


def main(argv: list[str]) -> int:
    rec = receipt()
    print(f"{'case':<24} {'render ms':>9} {'height':>7} {'ours B':>8} {'escpos B':>8} {'ratio':>6} "
          + " ".join(f"{'wire@' + str(b) + ' s':>13}" for b in BAUDS) + f" {'head s':>7} {'tcp ms':>7}")
    failed = False
    cases = [("fr+ar stacked", ("fr", "ar"), "stack", False, False),
             ("fr+ar side by side", ("fr", "ar"), "side", False, False),
             ("ar", ("ar",), "stack", False, False),
             ("fr+ar stacked compact", ("fr", "ar"), "stack", False, True),
             ("fr+ar side compact", ("fr", "ar"), "side", False, True),
             ("ar compact", ("ar",), "stack", False, True),
             ("fr, printer font", ("fr",), "stack", True, False)]
    with tempfile.TemporaryDirectory() as tmp, VirtualPrinter(Path(tmp)) as vp:
        vp.listen("127.0.0.1", 0)
        printer = open_printer(vp.url)
        for name, languages, layout, text, compact in cases:
            options = ReceiptOptions(dots=576, languages=languages, layout=layout, text=text,  # type: ignore[arg-type]
                                     signing_key=KEY, compact=compact)
            render(rec, options)  # warm: fonts, catalogues
            times = []
            for _ in range(RUNS):
                t = time.perf_counter()
                render(rec, options)
                times.append((time.perf_counter() - t) * 1000)
            prepared = prepare(rec, options)
            ours = len(prepared.data)
            # python-escpos's image() of the whole receipt's bitmap (with its QR code): the same paper
            base = len(escpos_image(render(rec, replace(options, compact=False))))
            before = len(vp.jobs)
            t = time.perf_counter()
            result = printer.print_job(prepared.data)
            tcp_ms = (time.perf_counter() - t) * 1000
            assert result.ok, result.error
            paper = vp.wait_jobs(before + 1)[-1].job.height
            head = paper / DOTS_PER_MM / HEAD_MM_S
            ms = statistics.median(times)
            print(f"{name:<24} {ms if not text else 0:>9.1f} {paper:>7} {ours:>8} {base:>8} {ours / base:>6.2f} "
                  + " ".join(f"{wire_s(ours, b):>13.2f}" for b in BAUDS) + f" {head:>7.2f} {tcp_ms:>7.1f}")
            if not text and (ms >= 50 or ours > 0.5 * base) or compact and wire_s(ours, 115200) > head:
                failed = True
            if wire_s(ours, 115200) > head:
                print(f"  {name}: at 115200 baud the wire ({wire_s(ours, 115200):.2f} s) is slower than the head "
                      f"({head:.2f} s)")
    print("targets: render < 50 ms, ours <= 0.5x escpos image(), wire at 115200 <= head at 100 mm/s")
    return 1 if failed else 0

"""Review 8, printing: R pressed three times while the paper is out is one DUPLICATA, two jobs on one printer
never interleave, a receipt whose every byte was taken is not queued again because the status after it came
late, and a Z report with a bad printer URL waits in the queue instead of raising. The virtual printer over
tcp://127.0.0.1, a FIFO as file://, a printer on a socket that never answers the after-job status."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.context import AgentContext
from agent.printing import PrintQueue, drain
from agent.scheduler import JobParts, Scheduler
from drivers.printer import open_printer
from sandbox.printer import VirtualPrinter
from tests.receipts.test_queue import _cfg, _pay_cash, _wait_job
from ui.receipt import print_blocks, print_lines, print_payment, print_queued, receipt_jobs
from ui.receipts import ReceiptOptions, Row


def test_r_pressed_three_times_while_the_paper_is_out_is_one_duplicata(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            payments = _pay_cash(ctx, seeded_references[0])
            assert print_payment(cfg, payments).state == "queued"
            for _ in range(3):
                assert print_payment(cfg, payments, duplicate=True).state == "queued"
            q = PrintQueue.open(cfg.state.dir)
            assert q.count() == 1
            [row] = q.waiting()
            assert row.duplicate
            vp.behaviour = "ok"
            sched = Scheduler()
            receipt_jobs(sched, JobParts(cfg, ctx.journal, ctx.client))
            assert sched.run_once(["print-queue"])["print-queue"].error is None
            _wait_job(vp, "the DUPLICATA", lambda j: j.cut and any("DUPLICATA" in line for line in j.text))
            assert q.count() == 0
            assert sched.run_once(["print-queue"])["print-queue"].error is None  # nothing left to print
            dups = [j for j in vp.jobs if j.job.cut and any("DUPLICATA" in line for line in j.job.text)]
            assert len(dups) == 1
            q.close()


def test_two_jobs_on_one_printer_take_turns(tmp_path: Path) -> None:
    fifo = tmp_path / "lp0"
    os.mkfifo(fifo)
    out = bytearray()

    def reader() -> None:
        with open(fifo, "rb") as f:
            while chunk := f.read(512):
                out.extend(chunk)
                time.sleep(0.001)  # a printer slower than the CPU: the pipe fills, the writers wait for it

    r = threading.Thread(target=reader)
    r.start()
    keep = os.open(fifo, os.O_WRONLY)  # the device stays open between jobs (as /dev/usb/lp0 does)
    a, b = b"\x1b@" + b"A" * 300_000 + b"\x1dV\x00", b"\x1b@" + b"B" * 300_000 + b"\x1dV\x00"
    # two Printer objects, as the receipt screen's worker and the print-queue job each have their own
    p1, p2 = open_printer(f"file://{fifo}", 10), open_printer(f"file://{fifo}", 10)
    results: list[Any] = []
    jobs = [threading.Thread(target=lambda p=p, j=j: results.append(p.print_job(j))) for p, j in ((p1, a), (p2, b))]
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    os.close(keep)
    r.join()
    assert all(res.ok for res in results)
    assert bytes(out) in (a + b, b + a)


class LatePrinter:
    """A printer on 127.0.0.1 that answers the status before a job and never the one after it (busy printing)."""

    def __init__(self) -> None:
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(5)
        self.port = self.s.getsockname()[1]
        self.jobs: list[bytes] = []
        self.done = threading.Event()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self) -> None:
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            buf = bytearray()
            with c:
                while d := c.recv(65536):
                    buf += d
                    if len(buf) < 200 and b"\x10\x04" in d:  # before the job: ready
                        c.send(bytes([0x12]) * d.count(b"\x10\x04"))
            self.jobs.append(bytes(buf))
            self.done.set()


@pytest.fixture
def late_printer() -> Iterator[LatePrinter]:
    lp = LatePrinter()
    yield lp
    lp.s.close()


def test_a_receipt_on_paper_whose_late_status_timed_out_is_not_queued_again(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str], late_printer: LatePrinter
) -> None:
    cfg = _cfg(billing_config, f"tcp://127.0.0.1:{late_printer.port}")
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        payments = _pay_cash(ctx, seeded_references[0])
        out = print_payment(cfg, payments)
        assert late_printer.done.wait(20)
        assert any(b"\x1dV" in j for j in late_printer.jobs)  # the whole job reached the printer
        assert out.state == "printed"
        assert any("status unknown" in n for n in out.notes)
        q = PrintQueue.open(cfg.state.dir)
        assert q.count() == 0
        q.close()


def test_a_z_report_with_a_bad_printer_url_waits_instead_of_raising(tmp_path: Path, billing_config: Any) -> None:
    # the config's own check refuses this URL; a Config built in code (or an older file) may still hold one
    good = _cfg(billing_config, "tcp://127.0.0.1:9")
    cfg = good.model_copy(update={"printer": good.printer.model_copy(update={"url": "lpt://x"})})
    out = print_blocks(cfg, "Z-2026-11-30", [("fr", [Row("text", "Total", "0,00")])])
    assert out.state == "queued" and "lpt://x" in out.message
    q = PrintQueue.open(cfg.state.dir)
    assert q.numbers() == ["Z-2026-11-30"]
    q.close()


def test_another_program_printing_on_the_device_is_waited_for_not_interleaved(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    device.write_bytes(b"")
    other = os.open(device, os.O_WRONLY)  # another program's job in progress holds the device's lock
    fcntl.flock(other, fcntl.LOCK_EX)
    printer = open_printer(f"file://{device}", 0.3)
    busy = printer.print_job(b"\x1b@ours\x1dV\x00")
    assert not busy.ok and "busy" in busy.message and device.read_bytes() == b""
    fcntl.flock(other, fcntl.LOCK_UN)
    os.close(other)
    assert printer.print_job(b"\x1b@ours\x1dV\x00").ok
    assert device.read_bytes() == b"\x1b@ours\x1dV\x00"


def test_the_day_close_waits_for_paper_and_prints_from_the_queue(tmp_path: Path, billing_config: Any) -> None:
    from agent.dayclose.export import paper_lines

    data = {"day": "2026-11-30", "terminal_id": "ORAN-07-G1", "online": True, "clean": True, "problems": 0,
            "kinds": {}, "lines": [], "journal": {"count": 0, "amount": {}, "stamp_duty": {}}, "by_method": {},
            "by_cashier": {}, "server": {"count": 0, "amount": {}, "stamp_duty": {}}, "unchecked": []}
    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        lines = paper_lines(data, cfg.printer.paper)
        for _ in range(2):  # Ctrl+P twice while the paper is out: one copy waits
            outcome = print_lines(cfg, "Z 2026-11-30", lines)
            assert (outcome.state, outcome.message) == ("queued", "paper out")
        vp.behaviour = "ok"
        queue = PrintQueue.open(cfg.state.dir)
        assert queue.numbers() == ["Z 2026-11-30"]
        printer = open_printer(vp.url, timeout=2)
        assert drain(queue, printer, print_queued(ReceiptOptions.from_config(cfg))).error is None
        job = _wait_job(vp, "the day close", lambda j: j.cut and any("2026-11-30" in line for line in j.text))
        assert not job.errors and queue.numbers() == []
        queue.close()

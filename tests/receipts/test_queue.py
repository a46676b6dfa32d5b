"""The print queue on real parts: a cash payment through the agent's flow against the sandbox server, the
receipt sent over tcp://127.0.0.1 to the virtual printer with each fault a counter meets (paper out, cover
open, offline, slow, unplugged mid-job). The payment is never touched (journaled, uploaded); the receipt waits
in printq.db and the scheduler's print-queue job prints it as DUPLICATA once the printer is back, or a reprint
takes its place."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.context import AgentContext
from agent.printing import MAX_ATTEMPTS, PrintQueue, PrintQueueError, drain
from agent.scheduler import JobParts, Scheduler
from drivers.printer import open_printer
from sandbox.printer import VirtualPrinter
from tests.core.conftest import with_changes
from tests.receipts.conftest import TEST_PAN
from ui.receipt import print_payment, print_queued, receipt_from_payload, receipt_jobs, receipt_payload
from ui.receipts import Receipt, ReceiptOptions

FAULTS = {  # behaviour -> what the cashier is told
    "paper_out": "paper out",
    "cover_open": "cover open",
    "offline": "offline",
    "slow": "within",
    "disconnect": "printer tcp://",
}


def _cfg(billing_config: Any, url: str, **printer: Any) -> Any:
    # French in the printer's own font: the virtual printer reads the text back (DUPLICATA, the receipt number)
    return with_changes(billing_config, printer={"url": url, "timeout": 1.0, "languages": ["fr"], "text": True,
                                                 "drawer": True, **printer},
                        receipts={"signing_key": "test-signing-key-0123456789abcdef"})


def _pay_cash(ctx: AgentContext, reference: str) -> list[Any]:
    result = ctx.flow.pay([ctx.flow.lookup(reference)], method="cash", cashier_id="c0042")
    assert result.status == "approved", result.message
    return result.payments


def _text(vp: VirtualPrinter, index: int = -1) -> str:
    return "\n".join(vp.jobs[index].job.text)


def _wait_job(vp: VirtualPrinter, what: str, pred: Callable[[Any], bool]) -> Any:
    """The first job the virtual printer saved that `pred` accepts (bounded wait; fails naming `what`)."""
    with vp._cond:
        if not vp._cond.wait_for(lambda: any(pred(j.job) for j in vp.jobs), 20):
            raise AssertionError(f"virtual printer: no {what} among {len(vp.jobs)} jobs")
        return next(j.job for j in vp.jobs if pred(j.job))


@pytest.mark.parametrize("behaviour", list(FAULTS))
def test_a_printer_fault_never_touches_the_payment_and_the_receipt_prints_later(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str], behaviour: str
) -> None:
    with VirtualPrinter(tmp_path / "paper", behaviour=behaviour, slow_delay=3.0, disconnect_after=200) as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            payments = _pay_cash(ctx, seeded_references[0])
            number = payments[0].receipt_number
            outcome = print_payment(cfg, payments)
            assert outcome.state == "queued" and FAULTS[behaviour] in outcome.message, outcome
            # the payment: journaled approved, then uploaded as if no printer existed
            assert ctx.journal.find(number).state == "approved"
            assert ctx.sync_worker().run_once().uploaded == 1
            assert [p["payment_id"] for p in billing_server.recorded_payments()] == [payments[0].payment_id]
            queue = PrintQueue.open(cfg.state.dir)
            assert queue.numbers() == [number]
            jobs_before = len(vp.jobs)  # a job cut short by the fault may come out as a stub, never whole

            # still broken: the job looks at the status (or fails fast) and waits; nothing is lost
            sched = Scheduler()
            receipt_jobs(sched, JobParts(cfg, ctx.journal, ctx.client))
            if behaviour in ("paper_out", "cover_open", "offline"):
                assert sched.run_once(["print-queue"])["print-queue"].error is None
                assert queue.numbers() == [number] and len(vp.jobs) == jobs_before

            vp.behaviour = "ok"
            assert sched.run_once(["print-queue"])["print-queue"].error is None
            assert queue.numbers() == []
            job = _wait_job(vp, "DUPLICATA", lambda j: any("DUPLICATA" in line for line in j.text))
            assert number in "\n".join(job.text)
            assert job.cut and job.drawer_kicks == 0  # a DUPLICATA opens no drawer
            queue.close()


def test_cash_opens_the_drawer_and_a_reprint_is_a_duplicata(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    with VirtualPrinter(tmp_path / "paper") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            payments = _pay_cash(ctx, seeded_references[0])
            assert print_payment(cfg, payments).state == "printed"
            vp.wait_jobs(1)
            assert "DUPLICATA" not in _text(vp, 0) and vp.jobs[0].job.drawer_kicks == 1
            # from the history: the same receipt again, marked
            assert print_payment(cfg, payments, duplicate=True).state == "printed"
            vp.wait_jobs(2)
            assert "DUPLICATA" in _text(vp, 1) and vp.jobs[1].job.drawer_kicks == 0


def test_a_reprint_by_hand_replaces_the_queued_copy(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            payments = _pay_cash(ctx, seeded_references[0])
            assert print_payment(cfg, payments).state == "queued"
            vp.behaviour = "ok"
            assert print_payment(cfg, payments, duplicate=True).state == "printed"
            queue = PrintQueue.open(cfg.state.dir)
            assert queue.numbers() == []  # one DUPLICATA on paper, not two
            queue.close()


def test_the_drawer_opens_for_cash_even_when_the_receipt_cannot_print(
    tmp_path: Path, billing_config: Any, billing_server: Any, seeded_references: list[str]
) -> None:
    # A printer that takes bytes but whose status says "near end" is ready; one that refuses the receipt
    # (garbage status: a protocol error before any byte) still gets the drawer pulse alone.
    with VirtualPrinter(tmp_path / "paper", behaviour="garbage") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url)
        with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
            payments = _pay_cash(ctx, seeded_references[0])
            assert print_payment(cfg, payments).state == "queued"
            job = _wait_job(vp, "drawer pulse", lambda j: j.drawer_kicks > 0)  # written when its link ends
            assert job.drawer_kicks == 1 and not job.text


# -- the store, hostile ---------------------------------------------------------------------------------------


def _receipt(pan_masked: str = "628058******1239") -> Receipt:
    from tests.receipts.conftest import one_bill

    r = one_bill()
    return Receipt(**{**r.__dict__, "pan_masked": pan_masked})


def test_the_queue_never_stores_a_full_card_number(tmp_path: Path) -> None:
    queue = PrintQueue.open(tmp_path)
    with pytest.raises(PrintQueueError, match="card number"):
        queue.add("R-1", {"pan_masked": TEST_PAN})
    with pytest.raises(PrintQueueError, match="card number"):
        queue.add("R-1", {"note": f"card {TEST_PAN[:4]} {TEST_PAN[4:8]} {TEST_PAN[8:12]} {TEST_PAN[12:]}"})
    # a Receipt never carries more than first 6 + last 4, whatever it was given
    queue.add("R-2", receipt_payload(Receipt.from_payments([_Row(TEST_PAN)])))
    assert queue.numbers() == ["R-2"]
    queue.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("printq.db*"))
    assert TEST_PAN.encode() not in data
    assert (tmp_path / "printq.db").stat().st_mode & 0o777 == 0o600


class _Row:
    """A journal row as the flow writes it, with a card value that is (wrongly) a full PAN."""

    def __init__(self, pan: str) -> None:
        self.receipt_number, self.agency_id, self.terminal_id, self.cashier_id = "R-2", "ORAN-07", "ORAN-07-G1", "c1"
        self.captured_at, self.currency, self.bill_reference, self.amount = "2026-11-30T08:14:00Z", "DZD", "B-1", 100
        self.method, self.state, self.captured_offline, self.bill = "card_reader", "approved", False, None
        self.card, self.authorization, self.stamp_duty = {"scheme": "CIB", "pan_masked": pan}, {"code": "A1"}, None


def test_bounds_and_damaged_rows(tmp_path: Path, vprinter: VirtualPrinter) -> None:
    queue = PrintQueue.open(tmp_path)
    with pytest.raises(PrintQueueError, match="over"):
        queue.add("R-3", {"x": "a" * 70_000})
    queue.add("R-4", receipt_payload(_receipt()))
    queue.add("R-5", {"number": "R-5", "bills": "not a list"})  # readable JSON, not a receipt
    queue.close()
    with sqlite3.connect(tmp_path / "printq.db") as raw:  # a damaged row, as a disk could leave it
        raw.execute("INSERT INTO prints (receipt_number, kind, payload, duplicate, reason, created_at, updated_at)"
                    " VALUES ('R-6', 'receipt', '{not json', 1, '', '', '')")
    queue = PrintQueue.open(tmp_path)
    printer = open_printer(vprinter.url, timeout=2)
    options = ReceiptOptions(languages=("fr",), text=True)
    queue.add("R-7", receipt_payload(_receipt()))
    outcome = drain(queue, printer, print_queued(options))
    assert outcome.error is None
    # printed; R-5 refused by the renderer, kept with its reason, holding nothing back; R-6 dropped
    # (named in the log)
    assert queue.numbers() == ["R-5"]
    [left] = queue.waiting()
    assert left.attempts == 1 and "queued receipt" in left.reason
    jobs = vprinter.wait_jobs(2)
    assert all("ORAN-07-G2-000042" in "\n".join(j.job.text) for j in jobs)  # hold one_bill()
    for _ in range(MAX_ATTEMPTS - 1):  # never printable: dropped after MAX_ATTEMPTS runs
        drain(queue, printer, print_queued(options))
    assert queue.numbers() == []
    queue.close()


def test_a_newer_schema_is_one_line(tmp_path: Path) -> None:
    PrintQueue.open(tmp_path).close()
    with sqlite3.connect(tmp_path / "printq.db") as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(PrintQueueError, match="newer"):
        PrintQueue.open(tmp_path)


# -- the device registry's printer ----------------------------------------------------------------------------


def test_the_printer_probe_in_the_device_registry(tmp_path: Path, billing_config: Any) -> None:
    from agent.devices import DeviceRegistry
    from agent.printing import PrinterProbe

    assert PrinterProbe.from_config(billing_config) is None  # [printer] url = "none": no probe
    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        probe = PrinterProbe.from_config(_cfg(billing_config, vp.url), interval=1.0)
        assert probe is not None and probe.interval >= 5.0
        registry = DeviceRegistry([probe])
        [state] = registry.refresh()
        assert (state.kind, state.name, state.state, state.detail) == ("printer", vp.url, "error", "paper out")
        vp.behaviour = "ok"
        assert [s.state for s in registry.refresh()] == ["ready"]
    assert registry.refresh()[0].state == "absent"  # nobody listening any more


def test_a_store_that_cannot_open_costs_its_job_not_the_agent(
    tmp_path: Path, billing_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(billing_config, "tcp://127.0.0.1:9")
    state = Path(cfg.state.dir)
    (state / "outbox.db").mkdir(parents=True)  # not a database: as a broken disk or a bad hand could leave it
    with AgentContext.open(cfg, ["cash"], take_payments=True) as ctx:
        sched = Scheduler()
        receipt_jobs(sched, JobParts(cfg, ctx.journal, ctx.client))
        assert list(sched.jobs) == ["print-queue"]
    assert any("e-mail/SMS" in r.getMessage() and "outbox.db" in r.getMessage() for r in caplog.records)


def test_a_z_report_waits_for_paper_too(tmp_path: Path, billing_config: Any) -> None:
    from ui.receipt import print_blocks
    from ui.receipts import Row

    with VirtualPrinter(tmp_path / "paper", behaviour="paper_out") as vp:
        vp.listen("127.0.0.1", 0)
        cfg = _cfg(billing_config, vp.url, text=False)
        blocks = [("fr", [Row("title", "Rapport Z"), Row("pair", "Espèces", "11 273,00 DA"), Row("rule")]),
                  ("ar", [Row("title", "تقرير Z"), Row("pair", "نقدا", "11 273,00 DA")])]
        outcome = print_blocks(cfg, "Z-2026-11-30", blocks)
        assert (outcome.state, outcome.message) == ("queued", "paper out")
        vp.behaviour = "ok"
        queue = PrintQueue.open(cfg.state.dir)
        printer = open_printer(vp.url, timeout=2)
        assert drain(queue, printer, print_queued(ReceiptOptions.from_config(cfg))).error is None
        assert queue.numbers() == []
        job = _wait_job(vp, "the Z report", lambda j: j.cut and j.height > 100)
        assert not job.errors
        queue.close()


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                   max_size=4), max_leaves=20)
_FIELDS = st.sampled_from(["number", "agency_id", "terminal_id", "cashier_id", "when", "currency", "bills",
                           "method", "stamp_duty", "scheme", "pan_masked", "auth_code", "state", "offline"])


_VALID = receipt_payload(Receipt.from_payments([_Row("628058******1239")]))


@given(st.dictionaries(_FIELDS, _JSON, max_size=14)
       | st.dictionaries(_FIELDS, _JSON, min_size=1, max_size=3).map(lambda d: {**_VALID, **d}))
@example(receipt_payload(Receipt.from_payments([_Row("628058******1239")])))
@example({**receipt_payload(Receipt.from_payments([_Row("628058******1239")])), "pan_masked": TEST_PAN})
@settings(deadline=None)  # no timing in the tests: a loaded machine is not a failure
def test_any_stored_payload_is_a_receipt_or_one_error(data: dict[str, Any]) -> None:
    """The queue's file is outside this process: whatever a row holds, reading it back gives a Receipt (with at
    most first 6 + last 4 of a card) or one ValueError line, never another exception."""
    try:
        receipt = receipt_from_payload(data, duplicate=True)
    except ValueError as e:
        assert str(e).startswith("queued receipt:") and "\n" not in str(e)
        return
    assert receipt.duplicate and len([c for c in receipt.pan_masked if c.isdigit()]) <= 10

"""The print queue: receipts that could not print wait here and print when the printer is back.

    queue = PrintQueue.open(config.state.dir)                # state_dir/printq.db, 0600, versioned schema
    queue.add("ORAN-07-G2-000042", {"number": ...}, reason="paper out")   # what to print: never a full PAN
    queue.waiting()                                          # [QueuedPrint(id=1, receipt_number=..., ...)]
    drain(queue, printer, print_one)                         # the scheduler's "print-queue" job (below)

A payment never waits for the printer: the receipt screen prints from a worker, and a failed job (paper out,
cover open, offline, unplugged, too slow) is one row here. The job (`drain`, every PRINT_INTERVAL s, no link
needed) asks the printer's real-time status first (a few bytes, nothing rendered) and prints the oldest rows
once it is ready; a printed row is deleted (the journal keeps the payment; the queue keeps no history). A row
reprinted from the queue says DUPLICATA: the first attempt may have put part of it on paper. A row whose
payload cannot be read back as a receipt (UnprintableRow) holds no other back and is dropped after
MAX_ATTEMPTS runs, named in the log.

What is stored is the receipt as the printer would show it (`ui.receipts.Receipt` fields, card as pan_masked):
`add` refuses a payload that holds a card number (drivers.pan.find_pans) or is larger than MAX_PAYLOAD.
The renderer is the UI's (`ui/receipt.py: print_queued`): this module only keeps rows and talks to the driver.

`PrinterProbe` is the device registry's printer (agent/devices.py Probe protocol): `[printer] url` polled
every PROBE_INTERVAL s through `Printer.presence()`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import clock
from agent.errors import StorageError
from agent.scheduler import Outcome, step_over
from agent.storage import open_database, storage_errors
from config import Config
from drivers.pan import find_pans
from drivers.printer import Printer, PrinterError, PrintResult, open_printer

if TYPE_CHECKING:
    from agent.devices import DeviceState

log = logging.getLogger("guichet.printing")

FILE = "printq.db"
MAX_PAYLOAD = 64 * 1024  # bytes of JSON: a 50-bill receipt is about 8 KiB
MAX_WAITING = 500  # rows: past this, add() refuses (a printer away for days; the history can reprint)
MAX_REASON = 200
DRAIN_BATCH = 20  # receipts printed in one run of the job
PRINT_INTERVAL = 5.0  # seconds between two looks at the printer while receipts wait
PROBE_INTERVAL = 5.0
KINDS = ("receipt", "rows", "lines")  # lines: text already cut to the paper, in the printer's font
MAX_ATTEMPTS = 5  # runs a row that cannot be rendered is tried before it is dropped (named in the log)

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE prints (
            id INTEGER PRIMARY KEY,
            receipt_number TEXT NOT NULL,
            kind TEXT NOT NULL,              -- receipt | rows (a printout in rows) | lines (the day close's text)
            payload TEXT NOT NULL,           -- JSON of what to print; a card only as pan_masked
            duplicate INTEGER NOT NULL,      -- 1: print it as DUPLICATA
            reason TEXT NOT NULL,            -- why it waits: the last printer error, one line
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    ),
]


class PrintQueueError(StorageError):
    """A print that cannot be queued (holds a card number, too large, queue full) or a store failure."""


@dataclass(frozen=True)
class QueuedPrint:
    id: int
    receipt_number: str
    kind: str
    payload: dict[str, Any]
    duplicate: bool
    reason: str
    attempts: int
    created_at: str


class PrintQueue:
    """Receipts waiting for the printer. One transaction per change; safe to share between threads."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path = conn, path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, state_dir: str | Path) -> PrintQueue:
        path = Path(state_dir) / FILE
        return cls(open_database(path, MIGRATIONS, error=PrintQueueError, timeout=5), path)

    def close(self) -> None:
        self.conn.close()

    def add(self, receipt_number: str, payload: dict[str, Any], *, kind: str = "receipt", reason: str = "",
            duplicate: bool = True) -> int:
        """Queue one print; its id. PrintQueueError (one line) for a payload we must not or cannot keep.
        A receipt (or printout) already waiting is replaced, not queued twice: R pressed three times while the
        paper is out is one DUPLICATA when it is back."""
        number = str(receipt_number)[:64]
        if kind not in KINDS:
            raise PrintQueueError(f"print queue: kind {kind!r} is not receipt, rows or lines")
        try:
            text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
        except (TypeError, ValueError) as e:
            raise PrintQueueError(f"print queue: receipt {number}: payload is not JSON: {e}") from None
        if len(text.encode()) > MAX_PAYLOAD:
            raise PrintQueueError(f"print queue: receipt {number}: payload over {MAX_PAYLOAD} bytes")
        if find_pans(text) or find_pans(number):
            # The one rule the queue enforces itself, whoever calls it: no card number on disk.
            raise PrintQueueError(f"print queue: receipt {number}: payload holds a card number; not stored")
        now = clock.now_stamp()
        with self._lock, storage_errors(self.path, "print queue"):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = self.conn.execute("SELECT id FROM prints WHERE receipt_number = ? AND kind = ? ORDER BY id",
                                        (number, kind)).fetchone()
                if row is not None:
                    self.conn.execute(
                        "UPDATE prints SET payload = ?, duplicate = max(duplicate, ?), reason = ?, updated_at = ?"
                        " WHERE id = ?", (text, int(duplicate), _line(reason), now, row[0]))
                    self.conn.execute(
                        "DELETE FROM prints WHERE receipt_number = ? AND kind = ? AND id != ?", (number, kind, row[0]))
                    self.conn.execute("COMMIT")
                    log.info("receipt %s waits for the printer (already queued): %s", number, _line(reason))
                    return int(row[0])
                (count,) = self.conn.execute("SELECT count(*) FROM prints").fetchone()
                if count >= MAX_WAITING:
                    raise PrintQueueError(f"print queue: {count} prints waiting already; reprint from history")
                cur = self.conn.execute(
                    "INSERT INTO prints (receipt_number, kind, payload, duplicate, reason, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (number, kind, text, int(duplicate), _line(reason), now, now),
                )
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
        log.info("receipt %s waits for the printer: %s", number, _line(reason))
        return int(cur.lastrowid or 0)

    def waiting(self, limit: int = DRAIN_BATCH) -> list[QueuedPrint]:
        """The oldest first."""
        with self._lock, storage_errors(self.path, "print queue"):
            rows = self.conn.execute("SELECT * FROM prints ORDER BY id LIMIT ?", (int(limit),)).fetchall()
        out = []
        for r in rows:
            try:
                payload = json.loads(r["payload"])
            except ValueError:
                payload = None
            if not isinstance(payload, dict):  # a damaged row: dropped, named, never the job's end
                log.error("print queue: receipt %s: stored payload unreadable; dropped", r["receipt_number"])
                self.remove(r["id"])
                continue
            out.append(QueuedPrint(r["id"], r["receipt_number"], r["kind"], payload, bool(r["duplicate"]),
                                   r["reason"], r["attempts"], r["created_at"]))
        return out

    def count(self) -> int:
        with self._lock, storage_errors(self.path, "print queue"):
            return int(self.conn.execute("SELECT count(*) FROM prints").fetchone()[0])

    def numbers(self) -> list[str]:
        """Receipt numbers waiting, oldest first (the receipt screen and the history show "waiting")."""
        with self._lock, storage_errors(self.path, "print queue"):
            return [r[0] for r in self.conn.execute("SELECT receipt_number FROM prints ORDER BY id")]

    def remove(self, print_id: int) -> None:
        """Printed (or given up by a person): the row goes."""
        with self._lock, storage_errors(self.path, "print queue"):
            self.conn.execute("DELETE FROM prints WHERE id = ?", (int(print_id),))

    def remove_receipt(self, receipt_number: str) -> int:
        """A receipt reprinted by hand: its queued copies are not needed any more; how many went."""
        with self._lock, storage_errors(self.path, "print queue"):
            cur = self.conn.execute("DELETE FROM prints WHERE receipt_number = ? AND kind = 'receipt'",
                                    (str(receipt_number)[:64],))
        return cur.rowcount

    def failed(self, print_id: int, reason: str) -> None:
        with self._lock, storage_errors(self.path, "print queue"):
            self.conn.execute(
                "UPDATE prints SET attempts = attempts + 1, reason = ?, updated_at = ? WHERE id = ?",
                (_line(reason), clock.now_stamp(), int(print_id)),
            )


class UnprintableRow(PrinterError):
    """A queued row that cannot be turned into a job (its stored payload is not a receipt): print_one's answer
    for it, so that drain goes on with the next row and drops this one after MAX_ATTEMPTS."""

    kind = "error"


PrintOne = Callable[[Printer, QueuedPrint], PrintResult]


def drain(queue: PrintQueue, printer: Printer, print_one: PrintOne, *, limit: int = DRAIN_BATCH) -> Outcome:
    """One run of the print-queue job: nothing to do, the printer not ready (wait, no error: the printer is
    not the billing server and a paper roll is not a failure), or the oldest rows printed in order until
    one fails. `print_one` renders and sends one row (ui/receipt.py: print_queued); it must not raise."""
    items = queue.waiting(limit)
    if not items:
        return Outcome()
    if printer.parsed.readable:
        got = printer.probe()  # a few status bytes: nothing is rendered for a printer that cannot print
        if isinstance(got, PrinterError) or not got.ready:
            return Outcome()
    for item in items:
        if item is not items[0] and step_over():  # the step's slice is spent: the rest at the next step, at once
            return Outcome(more=True)
        result = print_one(printer, item)
        if not result.ok:
            queue.failed(item.id, result.message)
            if isinstance(result.error, UnprintableRow):  # the row, not the printer: the next ones go on
                if item.attempts + 1 >= MAX_ATTEMPTS:
                    queue.remove(item.id)
                    log.error("print queue: receipt %s dropped after %d attempts: %s (reprint it from the history)",
                              item.receipt_number, MAX_ATTEMPTS, result.message)
                continue
            return Outcome()
        queue.remove(item.id)
        log.info("receipt %s printed from the queue", item.receipt_number)
    return Outcome(more=len(items) == limit)


# -- the device registry's printer ---------------------------------------------------------------------


class PrinterProbe:
    """agent.devices.Probe for `[printer] url`: ready / error (paper out, cover open, offline) / unresponsive /
    absent, from `Printer.presence()` (each poll bounded by `[printer] timeout`)."""

    kind = "printer"

    def __init__(self, printer: Printer, *, interval: float = PROBE_INTERVAL) -> None:
        self.printer = printer
        self.interval = interval

    @classmethod
    def from_config(cls, cfg: Config, *, interval: float = PROBE_INTERVAL, **_: Any) -> PrinterProbe | None:
        url = cfg.printer.url
        if not url or url == "none":
            return None
        # the registry's interval is the TPE path's (1 s); a printer's status costs a connection: 5 s at least
        return cls(open_printer(url, cfg.printer.timeout), interval=max(interval, PROBE_INTERVAL))

    def poll(self, stop: threading.Event, once: bool = False) -> list[DeviceState]:
        # Imported here: agent/devices.py lists this probe in PROBES, so it imports this module at its top.
        from agent.devices import DeviceState

        state, detail = self.printer.presence()
        return [DeviceState("printer", self.printer.url, state, detail)]

    def wake(self) -> None:
        pass

    def close(self) -> None:
        pass


def _line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."

"""Durable captures per second: the journal against persist-queue's SQLiteAckQueue and a raw sqlite3 loop.

    ./dev bench journal [N] [ROUNDS]      (default 2000 x 7)

Same file system (a temp dir beside the repository), same `synchronous=FULL`, WAL everywhere, side by side:
- raw:           INSERT + COMMIT of one row per payment (the floor: one durable commit);
- persist-queue: put + ack (SQLiteAckQueue: two commits);
- journal capture:      the approval of an authorised payment, committed with its outbox and audit rows
                        (one transaction; the payment is created and authorised just before, untimed, as
                        in the flow) — compared with raw (target >= 0.8x);
- journal capture+ack:  approval + upload result recorded (two transactions) — compared with
                        persist-queue put+ack (target >= 1.0x);
- journal full payment: created + authorizing + approved + uploaded (four transactions), for information.

Each contender keeps its own file for the whole run and is warmed up with N operations first. The run
rotates through the contenders in blocks of 250 operations, N x ROUNDS operations each, so that a slow
moment of the machine (this VM's fsync time drifts by 20% within a minute) hits every contender alike. A
ratio is the median over rotations of the paired blocks' times; rates are totals.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agent.journal import Journal, NewPayment
from agent.states import State

HERE = Path(__file__).resolve().parent.parent
BLOCK = 250
BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
REFS = itertools.count(1)


def bill() -> dict[str, object]:
    """A bill of its own per payment: the journal refuses a second payment on a bill with one in progress."""
    return {**BILL, "reference": f"{next(REFS):012d}"}
AUTH = {"code": "123456", "reference": "R1", "approved_at": "2026-11-22T09:14:03+01:00"}
CARD = {"scheme": "CIB", "pan_masked": "628058******1234", "pan_token": "ab" * 32, "expiry": "2028-05"}
PAYLOAD = {"payment_id": "", "bill_reference": "410726095518", "amount": 345600, "currency": "DZD",
           "method": "card_terminal", "card": {"scheme": "CIB", "pan_masked": "628058******1234"}}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-journal-", dir=HERE))


class Raw:
    """INSERT + COMMIT of one row (the payment as JSON) per operation."""

    def __init__(self, warm_up: int) -> None:
        self.conn = sqlite3.connect(workdir() / "raw.db", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("CREATE TABLE q (id TEXT PRIMARY KEY, data TEXT)")
        self.block(warm_up)  # the WAL file reaches its working size, as it has in the journal runs

    def block(self, n: int) -> float:
        rows = [(str(uuid.uuid4()), json.dumps(PAYLOAD)) for _ in range(n)]
        conn = self.conn
        t = time.perf_counter()
        for row in rows:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO q VALUES (?, ?)", row)
            conn.execute("COMMIT")
        return time.perf_counter() - t


class PersistQueue:
    """SQLiteAckQueue put + get + ack per operation, at our durability."""

    def __init__(self, warm_up: int) -> None:
        from persistqueue import SQLiteAckQueue

        self.q = SQLiteAckQueue(str(workdir()), auto_commit=True, multithreading=True)
        for conn in (self.q._putter, self.q._getter):  # same durability as ours
            conn.execute("PRAGMA synchronous=FULL")
        self.block(warm_up)

    def block(self, n: int) -> float:
        items = [dict(PAYLOAD, payment_id=str(uuid.uuid4())) for _ in range(n)]
        q = self.q
        t = time.perf_counter()
        for item in items:
            q.put(item)
            q.ack(q.get(block=False))
        spent = time.perf_counter() - t
        # Acked rows stay in its table until cleared (it keeps the last 1,000): as its users do, so that this
        # long-lived queue does not slow down with a table that only grows.
        q.clear_acked_data()
        return spent


class Capture:
    """The approval (with_ack: and the upload result) of a payment created and sent for authorisation just
    before, untimed, as in the payment flow, so that its approval lands where it does at a real counter."""

    def __init__(self, warm_up: int, with_ack: bool) -> None:
        self.j = Journal.open(workdir(), terminal_id="ORAN-07-G2", agency_id="ORAN-07")
        self.with_ack = with_ack
        for _ in range(warm_up):  # the files reach their working size
            self.authorizing()

    def authorizing(self) -> str:
        [p] = self.j.create([NewPayment(bill(), 345600)], currency="DZD", method="card_terminal", cashier_id="c",
                            captured_offline=False)
        self.j.transition(p.payment_id, State.AUTHORIZING, actor="c")
        return p.payment_id

    def block(self, n: int) -> float:
        j, spent = self.j, 0.0
        for _ in range(n):
            pid = self.authorizing()
            t = time.perf_counter()
            j.transition(pid, State.APPROVED, actor="c", card=CARD, authorization=AUTH)
            if self.with_ack:
                j.record_upload_results([{"payment_id": pid, "status": "accepted"}])
            spent += time.perf_counter() - t
        return spent


class FullPayment:
    """A cash payment from creation to upload: four transactions."""

    def __init__(self, warm_up: int) -> None:
        self.j = Journal.open(workdir(), terminal_id="ORAN-07-G2", agency_id="ORAN-07")
        self.block(warm_up)

    def block(self, n: int) -> float:
        j = self.j
        t = time.perf_counter()
        for _ in range(n):
            [p] = j.create([NewPayment(bill(), 345600)], currency="DZD", method="cash", cashier_id="c",
                           captured_offline=False)
            j.transition(p.payment_id, State.AUTHORIZING, actor="c")
            j.transition(p.payment_id, State.APPROVED, actor="c", authorization=AUTH)
            j.record_upload_results([{"payment_id": p.payment_id, "status": "accepted"}])
        return time.perf_counter() - t


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 7
    try:
        contenders = {
            "raw": Raw(n),
            "cap": Capture(n, with_ack=False),
            "pq": PersistQueue(n),
            "cap_ack": Capture(n, with_ack=True),
            "full": FullPayment(n),
        }
        spent: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(rounds):
            for start in range(0, n, BLOCK):
                size = min(BLOCK, n - start)
                for name, contender in contenders.items():
                    spent[name].append(contender.block(size))
    finally:
        for d in HERE.glob("bench-journal-*"):
            shutil.rmtree(d, ignore_errors=True)
    ops = n * rounds
    rate = {k: ops / sum(v) for k, v in spent.items()}

    def ratio(ours: str, peer: str) -> float:
        return statistics.median(p / o for o, p in zip(spent[ours], spent[peer], strict=True))

    print(f"operations: {n} x {rounds} per contender, in rotating blocks of {BLOCK}; synchronous=FULL, WAL,"
          f" on {HERE}")
    print(f"  raw sqlite3 insert+commit        {rate['raw']:9.0f} /s")
    print(f"  persist-queue put+ack            {rate['pq']:9.0f} /s")
    print(f"  journal capture (1 tx)           {rate['cap']:9.0f} /s   {ratio('cap', 'raw'):5.2f}x raw"
          "            (target >= 0.80)")
    print(f"  journal capture+ack (2 tx)       {rate['cap_ack']:9.0f} /s   {ratio('cap_ack', 'pq'):5.2f}x"
          " persist-queue  (target >= 1.00)")
    print(f"  journal full payment (4 tx)      {rate['full']:9.0f} /s   {ratio('full', 'pq'):5.2f}x"
          " persist-queue put+ack")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

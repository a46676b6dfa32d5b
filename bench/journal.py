"""Durable captures per second: the journal against persist-queue's SQLiteAckQueue and a raw sqlite3 loop.

    ./dev bench journal [N]

Same file system (a temp dir beside the repository), same `synchronous=FULL`, WAL everywhere, side by side:
- raw:           INSERT + COMMIT of one row per payment (the floor: one durable commit);
- persist-queue: put + ack (SQLiteAckQueue: two commits);
- journal capture:      the approval of an authorised payment, committed with its outbox and audit rows
                        (one transaction; the payment is created and authorised just before, untimed, as
                        in the flow) — compared with raw (target >= 0.8x);
- journal capture+ack:  approval + upload result recorded (two transactions) — compared with
                        persist-queue put+ack (target >= 1.0x);
- journal full payment: created + authorizing + approved + uploaded (four transactions), for information.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agent.journal import Journal, NewPayment
from agent.states import State

BILL = {"reference": "410726095518", "amount_due": 345600, "currency": "DZD", "status": "unpaid", "version": 3}
AUTH = {"code": "123456", "reference": "R1", "approved_at": "2026-11-22T09:14:03+01:00"}
PAYLOAD = {"payment_id": "", "bill_reference": "410726095518", "amount": 345600, "currency": "DZD",
           "method": "card_terminal", "card": {"scheme": "CIB", "pan_masked": "628058******1234"}}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="bench-journal-", dir=Path(__file__).resolve().parent.parent))


def raw_loop(n: int) -> float:
    d = workdir()
    conn = sqlite3.connect(d / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE q (id TEXT PRIMARY KEY, data TEXT)")
    rows = [(str(uuid.uuid4()), json.dumps(PAYLOAD)) for _ in range(2 * n)]
    for row in rows[n:]:  # warm-up: the WAL file reaches its working size, as it has in the journal runs
        conn.execute("BEGIN")
        conn.execute("INSERT INTO q VALUES (?, ?)", row)
        conn.execute("COMMIT")
    t = time.perf_counter()
    for row in rows[:n]:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO q VALUES (?, ?)", row)
        conn.execute("COMMIT")
    return time.perf_counter() - t


def persist_queue(n: int) -> float:
    from persistqueue import SQLiteAckQueue

    d = workdir()
    q = SQLiteAckQueue(str(d), auto_commit=True, multithreading=True)
    for conn in (q._putter, q._getter):  # same durability as ours
        conn.execute("PRAGMA synchronous=FULL")
    items = [dict(PAYLOAD, payment_id=str(uuid.uuid4())) for _ in range(2 * n)]

    def cycle(batch: list[dict[str, object]]) -> None:
        for item in batch:
            q.put(item)
            q.ack(q.get(block=False))

    cycle(items[n:])  # warm-up, as for the others
    t = time.perf_counter()
    cycle(items[:n])
    return time.perf_counter() - t


def _authorizing(j: Journal, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        [p] = j.create([NewPayment(BILL, 345600)], currency="DZD", method="card_terminal", cashier_id="c",
                       captured_offline=False)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c")
        ids.append(p.payment_id)
    return ids


def journal_capture(n: int, with_ack: bool) -> float:
    """Seconds spent in n captures. Each payment is created and sent for authorisation just before (not
    timed), as in the payment flow, so its approval lands where it does at a real counter."""
    j = Journal.open(workdir(), terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    _authorizing(j, n)  # warm-up: the files reach their working size
    card = {"scheme": "CIB", "pan_masked": "628058******1234", "pan_token": "ab" * 32, "expiry": "2028-05"}
    spent = 0.0
    for _ in range(n):
        [pid] = _authorizing(j, 1)
        t = time.perf_counter()
        j.transition(pid, State.APPROVED, actor="c", card=card, authorization=AUTH)
        if with_ack:
            j.record_upload_results([{"payment_id": pid, "status": "accepted"}])
        spent += time.perf_counter() - t
    return spent


def journal_full(n: int) -> float:
    j = Journal.open(workdir(), terminal_id="ORAN-07-G2", agency_id="ORAN-07")
    _authorizing(j, n)  # warm-up
    t = time.perf_counter()
    for _ in range(n):
        [p] = j.create([NewPayment(BILL, 345600)], currency="DZD", method="cash", cashier_id="c",
                       captured_offline=False)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c")
        j.transition(p.payment_id, State.APPROVED, actor="c", authorization=AUTH)
        j.record_upload_results([{"payment_id": p.payment_id, "status": "accepted"}])
    return time.perf_counter() - t


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 2000
    rounds = int(argv[1]) if len(argv) > 1 else 5
    import shutil

    runs: dict[str, list[float]] = {k: [] for k in ("raw", "pq", "cap", "cap_ack", "full")}
    # Interleaved rounds, so a busy moment of the machine hits every contender alike; medians reported.
    for _ in range(rounds):
        runs["raw"].append(n / raw_loop(n))
        runs["cap"].append(n / journal_capture(n, False))
        runs["pq"].append(n / persist_queue(n))
        runs["cap_ack"].append(n / journal_capture(n, True))
        runs["full"].append(n / journal_full(n))
    here = Path(__file__).resolve().parent.parent
    for d in here.glob("bench-journal-*"):
        shutil.rmtree(d, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    raw, pq, cap, cap_ack, full = med["raw"], med["pq"], med["cap"], med["cap_ack"], med["full"]
    pair = statistics.median(c / r for c, r in zip(runs["cap"], runs["raw"], strict=True))
    pair_pq = statistics.median(c / p for c, p in zip(runs["cap_ack"], runs["pq"], strict=True))
    print(f"operations: {n} x {rounds} interleaved rounds, synchronous=FULL, WAL, on {here}")
    print(f"  raw sqlite3 insert+commit        {raw:9.0f} /s")
    print(f"  persist-queue put+ack            {pq:9.0f} /s")
    print(f"  journal capture (1 tx)           {cap:9.0f} /s   {pair:5.2f}x raw            (target >= 0.80)")
    print(f"  journal capture+ack (2 tx)       {cap_ack:9.0f} /s   {pair_pq:5.2f}x persist-queue  (target >= 1.00)")
    print(f"  journal full payment (4 tx)      {full:9.0f} /s   {full / pq:5.2f}x persist-queue put+ack")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

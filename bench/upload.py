"""Upload of a 10,000-payment backlog to the sandbox server on loopback, batched vs one per request.

    ./dev bench upload [N]

Both runs use the agent's real SyncWorker and BillingClient against a real SandboxServer over HTTP on
127.0.0.1, each from a copy of the same journal. The baseline is batch_size = 1 (one payment per request).
Target: batched >= 20x the baseline.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import config
from agent.billing import BillingClient
from agent.journal import DB_NAME, Journal, NewPayment
from agent.states import State
from agent.sync import SyncWorker
from sandbox.billing.seed import generate_bills
from sandbox.billing.server import SandboxServer


def build_backlog(d: Path, n: int, refs: list[str]) -> Path:
    j = Journal.open(d, terminal_id="ORAN-07-G1", agency_id="ORAN-07")
    for i in range(n):
        bill = {"reference": refs[i % len(refs)], "amount_due": 10_000, "currency": "DZD", "status": "unpaid",
                "version": 1}
        [p] = j.create([NewPayment(bill, 100)], currency="DZD", method="cash", cashier_id="c", captured_offline=True)
        j.transition(p.payment_id, State.AUTHORIZING, actor="c")
        j.transition(p.payment_id, State.APPROVED, actor="c", authorization={"code": None})
    j.close()
    return d / DB_NAME


def upload(backlog: Path, batch_size: int, limit: int | None = None) -> tuple[int, float]:
    """Upload (up to `limit` payments of) the backlog; returns (payments uploaded, seconds)."""
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        shutil.copy(backlog, state / DB_NAME)
        with SandboxServer(Path(tmp) / "server.db", seed_bills=200, agency="ORAN-07") as server:
            cfg = config.validate({
                "terminal": {"id": "ORAN-07-G1", "agency_id": "ORAN-07"},
                "server": {"url": server.url, "token": server.token},
                "state": {"dir": str(state)},
                "sync": {"batch_size": batch_size},
            })
            j = Journal.open(state, terminal_id="ORAN-07-G1", agency_id="ORAN-07")
            worker = SyncWorker(cfg, j, BillingClient(cfg))
            batches = None if limit is None else max(1, limit // batch_size)
            t = time.perf_counter()
            report = worker.run_once(max_batches=batches)
            elapsed = time.perf_counter() - t
            assert report.error is None, report.error
            done = report.uploaded + report.duplicates
            assert len(server.recorded_payments()) == done
            j.close()
    return done, elapsed


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 10_000
    refs = [b["reference"] for b in generate_bills(200, "ORAN-07", seed=1) if b["status"] == "unpaid"]
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
        backlog = build_backlog(Path(tmp), n, refs)
        rows = []
        for size in (500, 100):
            done, secs = upload(backlog, size)
            rows.append((f"batch_size={size}", done, secs))
        # one payment per request: the whole backlog too, so the comparison is like for like
        done, secs = upload(backlog, 1)
        rows.append(("batch_size=1 (baseline)", done, secs))
    base_rate = rows[-1][1] / rows[-1][2]
    print(f"backlog: {n} payments, sandbox server on 127.0.0.1, real HTTP")
    for name, done, secs in rows:
        r = done / secs
        print(f"  {name:<26} {done:6d} payments in {secs:7.2f} s  {r:9.0f} /s  {r / base_rate:6.1f}x baseline")
    print("  target: batched >= 20x baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

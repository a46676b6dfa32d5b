"""The day's close of 5,000 payments against the sandbox server, and the bill cache at 500,000 bills.

    ./dev bench dayclose [PAYMENTS] [BILLS]

1. A journal of PAYMENTS (5,000) cash payments, all uploaded to a real SandboxServer over HTTP on 127.0.0.1;
   then `agent.dayclose.close_day` (journal read, the server's business day paged 1,000 at a time, reconcile)
   is timed, 3 runs. Target: under 2 s.
2. A bill cache (agent.bills.BillCache) loaded with BILLS (500,000) bills; `get()` timed for 10,000 random
   references (p50, p99; target p99 under 1 ms); then a 10,000-bill delta through the real feed
   (`BillCache.refresh` against a sandbox serving those 10,000 bills at a newer version). Target: under 2 s.
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import time
from datetime import timedelta, timezone
from pathlib import Path

import config
from agent.billing import BillingClient
from agent.bills import BillCache
from agent.dayclose import close_day
from agent.journal import Journal, NewPayment
from agent.states import State
from agent.sync import SyncWorker
from sandbox.billing.seed import generate_bills
from sandbox.billing.server import SandboxServer

AGENCY = "ORAN-07"
TERMINAL = "ORAN-07-G1"
AGENCY_TZ = timezone(timedelta(hours=1))  # the sandbox's business day


def _config(server: SandboxServer, state: Path) -> config.Config:
    return config.validate({
        "terminal": {"id": TERMINAL, "agency_id": AGENCY},
        "server": {"url": server.url, "token": server.token},
        "state": {"dir": str(state)},
        "sync": {"batch_size": 500},
    })


def bench_close(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-dayclose-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        with SandboxServer(Path(tmp) / "server.db", seed_bills=200, agency=AGENCY) as server:
            refs = server.references(status=None)
            cfg = _config(server, state)
            j = Journal.open(state, terminal_id=TERMINAL, agency_id=AGENCY)
            t = time.perf_counter()
            for i in range(n):
                bill = {"reference": refs[i % len(refs)], "amount_due": 10_000, "currency": "DZD",
                        "status": "unpaid", "version": 1}
                [p] = j.create([NewPayment(bill, 100 + i % 900)], currency="DZD", method="cash",
                               cashier_id=f"c{i % 4}", captured_offline=False)
                j.transition(p.payment_id, State.AUTHORIZING, actor="c")
                j.transition(p.payment_id, State.APPROVED, actor="c")
            print(f"  journal of {n} payments built in {time.perf_counter() - t:.1f} s")
            client = BillingClient(cfg)
            report = SyncWorker(cfg, j, client).run_once()
            assert report.error is None and report.uploaded == n, report
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                rep = close_day(cfg, j, client, tz=AGENCY_TZ)
                took = time.perf_counter() - t
                best = min(best, took)
                print(f"  close of {len(rep.lines)} lines: {took:.3f} s  ({rep.kinds}, clean={rep.clean})")
            assert rep.kinds == {"matched": n}, rep.kinds
            client.close()
            j.close()
    return best


def bench_cache(count: int, delta: int = 10_000, lookups: int = 10_000) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-bills-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        t = time.perf_counter()
        bills = generate_bills(count, AGENCY, seed=7)
        print(f"  {count} bills generated in {time.perf_counter() - t:.1f} s")
        cache = BillCache.open(state)
        t = time.perf_counter()
        for start in range(0, len(bills), 5000):
            cache.store(bills[start:start + 5000])
        print(f"  loaded into the cache in {time.perf_counter() - t:.1f} s ({cache.count()} payable kept)")
        payable = [b["reference"] for b in bills if b["status"] in ("unpaid", "partially_paid")]
        rng = random.Random(1)
        sample = [rng.choice(payable) for _ in range(lookups)]
        times = []
        for ref in sample:
            t = time.perf_counter_ns()
            found = cache.get(ref)
            times.append(time.perf_counter_ns() - t)
            assert found is not None
        times.sort()
        p50, p99 = times[len(times) // 2] / 1e6, times[int(len(times) * 0.99)] / 1e6
        print(f"  get(): p50 {p50:.3f} ms, p99 {p99:.3f} ms over {lookups} random references")
        # The delta: the server serves `delta` of those bills again (same references, seed 7), newer.
        with SandboxServer(Path(tmp) / "server.db", seed_bills=delta, seed=7, agency=AGENCY) as server:
            cfg = _config(server, state)
            client = BillingClient(cfg)
            t = time.perf_counter()
            changed = cache.refresh(client, AGENCY, limit=1000)
            took = time.perf_counter() - t
            print(f"  delta of {changed} bills through the feed (pages of 1,000): {took:.3f} s")
            client.close()
        cache.close()
    return p50, p99, took


def main(argv: list[str]) -> int:
    logging.disable(logging.WARNING)  # the sync's per-payment notices (bills paid twice by the loop) are noise here
    n = int(argv[0]) if argv else 5000
    count = int(argv[1]) if len(argv) > 1 else 500_000
    print(f"day close, {n} payments against the sandbox server on loopback")
    close = bench_close(n)
    print(f"  best {close:.3f} s (target < 2 s): {'ok' if close < 2 else 'MISSED'}")
    print(f"bill cache at {count} bills")
    _, p99, delta = bench_cache(count)
    print(f"  lookup p99 {p99:.3f} ms (target < 1 ms): {'ok' if p99 < 1 else 'MISSED'}")
    print(f"  10,000-bill delta {delta:.3f} s (target < 2 s): {'ok' if delta < 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

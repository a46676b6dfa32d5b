"""Cashier UI responsiveness: key-to-paint latency while 10,000 payments upload, vs idle; and the headless
agent's idle RSS and start-to-ready time.

    ./dev bench ui [N]          (N payments in the backlog, default 10000)

Key-to-paint: inside `App.run_test()` (Pilot, headless driver), a key event goes through the driver as a
terminal's would, and the clock stops at the first screen update (`App._display`) after the reference
field shows the character. Busy: the app's own sync worker drains an N-payment backlog to the sandbox
billing server (a separate process on 127.0.0.1, like the real remote server) while keys are measured.
Idle: the same app and keys with an empty outbox. Targets: p95 < 50 ms and busy p95 <= 1.5x idle p95.

Start-to-ready: `guichet run --headless` started with NOTIFY_SOCKET; the clock stops at READY=1 on our
AF_UNIX datagram socket. Idle RSS: VmRSS 2 s later. Targets: < 1 s and < 60 MB.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import config
from agent.cashiers import CashierStore
from agent.journal import DB_NAME, MAX_BASKET, Journal, NewPayment
from agent.states import State
from sandbox.billing.seed import generate_bills

AGENCY, TERMINAL, TOKEN = "ORAN-07", "ORAN-07-G1", "bench-token"
GUICHET = str(Path(sys.executable).with_name("guichet"))
ROUNDS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [GUICHET, "sandbox", "serve", "--port", str(port), "--db", str(tmp / "server.db"), "--token", TOKEN,
         "--seed-bills", "200", "--agency", AGENCY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the sandbox server did not start")


def build_backlog(state: Path, n: int) -> None:
    """N approved card payments waiting for upload, written a full basket (MAX_BASKET) per journal transaction."""
    bills = generate_bills(200, AGENCY)
    j = Journal.open(state, terminal_id=TERMINAL, agency_id=AGENCY)
    card = {"scheme": "CIB", "pan_masked": "603620******1231", "pan_token": None, "expiry": None, "aid": None}
    done = 0
    while done < n:
        k = min(MAX_BASKET, n - done)
        items = [NewPayment(bills[(done + i) % len(bills)], 100) for i in range(k)]
        ps = j.create(items, currency="DZD", method="card_terminal", cashier_id="c0042", captured_offline=True)
        ids = [p.payment_id for p in ps]
        j.transition(ids, State.AUTHORIZING, actor="c0042")
        j.transition(ids, State.APPROVED, actor="c0042", card=card, authorization={"code": "123456"})
        done += k
    j.close()


def make_config(url: str, state: Path) -> config.Config:
    return config.validate({
        "terminal": {"id": TERMINAL, "agency_id": AGENCY},
        "server": {"url": url, "token": TOKEN, "timeout": 10},
        "state": {"dir": str(state)},
        "sync": {"interval": 0.2, "batch_size": 100},
        "payments": {"default_method": "cash", "methods": ["cash"]},
    })


async def measure(cfg: config.Config, samples: int, until_drained: bool) -> tuple[list[float], int, float]:
    """Key-to-paint samples (seconds); also the backlog left and the seconds it took to drain."""
    from textual import events
    from textual.widgets import Input

    from ui.app import GuichetApp
    from ui.backend import Backend

    store = CashierStore.open(cfg.state.dir)
    if not store.list():
        store.add("c0042", "Bench", "4826")
    backend = Backend.open(cfg, cashiers=store)
    app = GuichetApp(backend, auto_login=("c0042", "4826"), run_sync=True)
    paints: list[float] = []
    painted = asyncio.Event()
    real_display = app._display

    def display(screen: Any, renderable: Any) -> None:
        real_display(screen, renderable)
        if renderable is not None:
            paints.append(time.perf_counter())
            painted.set()

    app._display = display  # type: ignore[method-assign]
    out: list[float] = []
    t_start = time.perf_counter()
    drained_at = 0.0
    try:
        async with app.run_test(size=(140, 44)) as pilot:
            for _ in range(400):
                if type(app.screen).__name__ == "PaymentScreen" and app.screen.query("#reference"):
                    break
                await pilot.pause(0.05)
            field = app.screen.query_one("#reference", Input)
            field.focus()
            await pilot.pause(0.2)
            t_start = time.perf_counter()
            digits = "0123456789"
            for i in range(samples * 4):
                if len(out) >= samples:
                    break
                if until_drained and backend.journal.queue_stats().count == 0:
                    drained_at = drained_at or time.perf_counter() - t_start
                    break
                if i % 10 == 0:
                    field.value = ""
                    await pilot.pause(0.01)
                ch = digits[i % 10]
                before = field.value
                painted.clear()
                t0 = time.perf_counter()
                app._driver.send_message(events.Key(ch, ch))  # type: ignore[union-attr]
                for _ in range(200):  # bounded: 2 s
                    try:
                        await asyncio.wait_for(painted.wait(), 0.01)
                    except TimeoutError:
                        continue
                    painted.clear()
                    if field.value == before + ch:
                        out.append(paints[-1] - t0)
                        break
                await asyncio.sleep(0.005)
            left = backend.journal.queue_stats().count
            if until_drained and not drained_at and left == 0:
                drained_at = time.perf_counter() - t_start
    finally:
        backend.close()
    return out, left, drained_at


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


def headless_start(url: str, tmp: Path, runs: int = 3) -> tuple[list[float], list[float]]:
    """(start-to-ready seconds, idle RSS MB) of `guichet run --headless`."""
    conf = tmp / "guichet.toml"
    state = tmp / "headless-state"
    state.mkdir(exist_ok=True)
    conf.write_text(
        f'[terminal]\nid = "{TERMINAL}"\nagency_id = "{AGENCY}"\n[server]\nurl = "{url}"\ntoken = "{TOKEN}"\n'
        f'[state]\ndir = "{state}"\n[payments]\ndefault_method = "cash"\nmethods = ["cash"]\n'
    )
    conf.chmod(0o600)
    ready, rss = [], []
    for i in range(runs):
        sock_path = tmp / f"notify-{i}.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(sock_path))
        s.settimeout(10)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "GUICHET_CONFIG": str(conf)}
        t0 = time.perf_counter()
        proc = subprocess.Popen([GUICHET, "run", "--headless"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                msg = s.recv(4096).decode()
                if "READY=1" in msg:
                    ready.append(time.perf_counter() - t0)
                    break
            time.sleep(2)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            rss.append(kb / 1024)
        except TimeoutError:
            print("  guichet run --headless sent no READY=1 within 10 s")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            s.close()
    return ready, rss


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[2:] if argv is None else argv
    n = int(args[0]) if args else 10_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    server, url = start_server(tmp)
    try:
        logging.disable(logging.WARNING)  # the sync worker logs every credited_to_account notice
        backlog = tmp / "backlog"
        backlog.mkdir()
        t = time.perf_counter()
        build_backlog(backlog, n)
        print(f"backlog: {n} approved payments written in {time.perf_counter() - t:.1f} s")
        busy: list[float] = []
        drains, left = [], 0
        for r in range(ROUNDS):  # the drain is quick on loopback: a few rounds for enough samples
            busy_state = tmp / f"busy-{r}"
            busy_state.mkdir()
            shutil.copy(backlog / DB_NAME, busy_state / DB_NAME)
            got, left, drained = asyncio.run(measure(make_config(url, busy_state), 2000, until_drained=True))
            busy += got
            drains.append(drained)
        drained = statistics.median(drains)
        idle_state = tmp / "idle"
        idle_state.mkdir()
        idle, _, _ = asyncio.run(measure(make_config(url, idle_state), max(200, len(busy)), until_drained=False))
        print(f"key-to-paint while uploading {n}: n={len(busy)} p50={pct(busy, 50):.1f} ms "
              f"p95={pct(busy, 95):.1f} ms max={max(busy) * 1000:.1f} ms "
              f"(backlog drained in {drained:.1f} s, median of {ROUNDS} rounds)" if busy else "no busy sample")
        if left:
            print(f"  ({left} payments still queued when sampling stopped)")
        print(f"key-to-paint idle:             n={len(idle)} p50={pct(idle, 50):.1f} ms "
              f"p95={pct(idle, 95):.1f} ms max={max(idle) * 1000:.1f} ms")
        if busy and idle:
            ratio = pct(busy, 95) / pct(idle, 95)
            print(f"busy/idle p95 ratio: {ratio:.2f}x (target <= 1.5x); "
                  f"busy p95 {'<' if pct(busy, 95) < 50 else '>='} 50 ms target")
        ready, rss = headless_start(url, tmp)
        if ready:
            print(f"guichet run --headless: start-to-ready median {statistics.median(ready) * 1000:.0f} ms "
                  f"(runs: {', '.join(f'{r * 1000:.0f}' for r in ready)}; target < 1000 ms)")
        if rss:
            print(f"guichet run --headless: idle RSS median {statistics.median(rss):.1f} MB (target < 60 MB)")
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])

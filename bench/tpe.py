"""Concert E+ exchange time against the wire: `./dev bench tpe` (or `python -m bench tpe`).

For 1200, 9600 and 115200 baud, a whole payment exchange (open the port, ENQ/ACK, request, EOT, the
terminal's call-back, answer, EOT) through ``ConcertLink`` against the TPE simulator on a pty, which paces
bytes at the baud rate. The floor is the wire time of the bytes exchanged (10 bits a character, half duplex)
plus the simulator's scripted think time; the ratio is elapsed / floor (target <= 1.1).
Peer: pyTeliumManager 2.4.2 (its ask()+verify(), port already open), when its virtualenv exists
(created by tests/tpe/test_telium_peer.py, or here with --peer).

Concert V3 / Caisse-AP over TCP (``--v3-only`` skips the serial part): a whole ``V3Link.pay`` on loopback
(connect, request, answer, close) against the V3 simulator in its own process, and the floor: a raw TCP
client/server in Python exchanging the same bytes (connect, send the request, read an answer of the same
length, close). With ``quiet=0`` the ratio is the cost of our code; with the default ``quiet`` (the wait for
more records after a complete answer, see docs/tpe.md) it adds that wait and nothing else.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from drivers.concert import Approved, ConcertLink, V3Link
from drivers.concert.v3_codec import build_request, encode_response
from drivers.concert.v3_link import DEFAULT_QUIET

RUNS = {1200: 3, 9600: 10, 115200: 30}
THINK = (0.0, 0.2)
PEER = Path(tempfile.gettempdir()) / "guichet-venv-telium-2.4.2" / "bin" / "python"
CLIENT = Path(__file__).resolve().parent.parent / "tests" / "tpe" / "telium_client.py"


@contextmanager
def simulator(baud: int, think: float) -> Iterator[str]:
    """The simulator in a process of its own (`guichet sandbox tpe`), as a terminal is a device of its own:
    in a thread of ours it would share the GIL with the driver and blur the figures."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "guichet", "sandbox", "tpe", "--baud", str(baud), "--think", str(think)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def exchange_times(baud: int, think: float, runs: int) -> list[tuple[float, float]]:
    """(elapsed, floor) per exchange."""
    out = []
    with simulator(baud, think) as path:
        link = ConcertLink(path, baud=baud, framing="7E1", ack_timeout=2.0, answer_timeout=10)
        link.pay(100, "DZD")  # warm-up (imports, first open)
        for _ in range(runs):
            time.sleep(0.02)  # let the terminal settle after its EOT (not timed)
            t0 = time.perf_counter()
            r = link.pay(123450, "DZD")
            elapsed = time.perf_counter() - t0
            assert isinstance(r, Approved), r
            floor = (r.bytes_in + r.bytes_out) * 10 / baud + think
            out.append((elapsed, floor))
    return out


def peer_time(baud: int, think: float) -> float | None:
    if not PEER.exists():
        return None
    with simulator(baud, think) as path:
        res = subprocess.run([str(PEER), str(CLIENT), path, str(baud), "7E1", "1234.5", "EUR"],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            return None
        return float(json.loads(res.stdout)["elapsed"])


V3_RUNS = 200
# A raw TCP peer in its own process: per connection, read `n` bytes, answer `m` bytes (or the hex answer given as
# a third argument), close.
ECHO_SERVER = """
import socket, sys
n, m = int(sys.argv[1]), int(sys.argv[2])
answer = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b"x" * m
s = socket.create_server(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = 0
    while got < n:
        d = c.recv(4096)
        if not d:
            break
        got += len(d)
    c.sendall(answer)
    c.close()
"""


@contextmanager
def v3_simulator() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "guichet", "sandbox", "tpe", "--protocol", "V3", "--listen", "127.0.0.1:0",
         "--think", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def v3_times(quiet: float) -> tuple[list[float], int, int]:
    """Elapsed per V3 exchange, and the bytes out/in of one."""
    out = []
    with v3_simulator() as url:
        link = V3Link(url, quiet=quiet, ack_timeout=2.0, answer_timeout=10)
        link.pay(100, "DZD")  # warm-up
        r = link.pay(123450, "DZD")
        for _ in range(V3_RUNS):
            t0 = time.perf_counter()
            r = link.pay(123450, "DZD")
            out.append(time.perf_counter() - t0)
            assert isinstance(r, Approved), r
    return out, r.bytes_out, r.bytes_in


@contextmanager
def raw_peer(n: int, m: int, answer: bytes = b"") -> Iterator[int]:
    args = [str(n), str(m)] + ([answer.hex()] if answer else [])
    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client_times(n: int) -> list[float]:
    """Our client alone: V3Link.pay against the raw peer answering a canned approval (then closing)."""
    req = build_request(123450, "DZD")
    answer = encode_response(req, status="10", extra={"AA": "628058######1239", "AC": "000001", "CF": "0000000001"})
    with raw_peer(n, len(answer), answer) as port:
        link = V3Link(f"tcp://127.0.0.1:{port}", quiet=0.0)
        out = []
        for i in range(V3_RUNS + 1):
            t0 = time.perf_counter()
            r = link.pay(123450, "DZD")
            if i:
                out.append(time.perf_counter() - t0)
            assert isinstance(r, Approved), r
    return out


def echo_times(n: int, m: int) -> list[float]:
    import socket

    request = build_request(123450, "DZD").encode()
    assert len(request) == n
    with raw_peer(n, m) as port:
        out = []
        for i in range(V3_RUNS + 1):
            t0 = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.sendall(request)
                got = 0
                while got < m:
                    d = s.recv(4096)
                    if not d:
                        break
                    got += len(d)
            if i:
                out.append(time.perf_counter() - t0)
        return out


def v3_main() -> None:
    print(f"Concert V3 over loopback TCP, {V3_RUNS} exchanges each (simulator and echo peer in their own process)")
    print(f"{'quiet s':>7} {'bytes':>9} {'echo ms':>8} {'median ms':>9} {'p90 ms':>7} {'ratio':>6} "
          f"{'over echo+quiet':>15}")
    for quiet in (0.0, DEFAULT_QUIET):
        times, n, m = v3_times(quiet)
        echo = statistics.median(echo_times(n, m))
        med = statistics.median(times)
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"{quiet:>7.2f} {f'{n}+{m}':>9} {echo * 1000:>8.3f} {med * 1000:>9.3f} {p90 * 1000:>7.3f} "
              f"{med / echo:>6.2f} {(med - echo - quiet) * 1000:>12.3f} ms")
    client = statistics.median(client_times(n))
    print(f"{'client':>7} {f'{n}+{m}':>9} {echo * 1000:>8.3f} {client * 1000:>9.3f} {'':>7} {client / echo:>6.2f} "
          f"{(client - echo) * 1000:>12.3f} ms   (V3Link against the raw peer: our side only)")
    print("ratio = median V3 exchange / median raw TCP exchange of the same bytes")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--v3-only" in argv:
        v3_main()
        return
    print(f"{'baud':>7} {'think s':>7} {'runs':>4} {'bytes':>5} {'wire+think ms':>13} {'median ms':>9} "
          f"{'ratio':>6} {'worst':>6} {'peer ms':>8} {'ours/peer':>9}")
    for baud, runs in RUNS.items():
        for think in THINK:
            pairs = exchange_times(baud, think, runs)
            floor = statistics.median(f for _, f in pairs)
            med = statistics.median(e for e, _ in pairs)
            worst = max(e / f for e, f in pairs)
            nbytes = round((floor - think) * baud / 10)
            peer = peer_time(baud, think) if "--no-peer" not in argv else None
            peer_txt = f"{peer * 1000:8.1f}" if peer else f"{'-':>8}"
            vs = f"{med / peer:9.2f}" if peer else f"{'-':>9}"
            print(f"{baud:>7} {think:>7.1f} {runs:>4} {nbytes:>5} {floor * 1000:>13.1f} {med * 1000:>9.1f} "
                  f"{med / floor:>6.3f} {worst:>6.3f} {peer_txt} {vs}")
    print("ratio = median elapsed / (wire time of the bytes exchanged + think time); target <= 1.1")
    if not PEER.exists():
        print(f"peer: no pyTeliumManager venv at {PEER.parent.parent} (run tests/tpe/test_telium_peer.py first)")
    print()
    v3_main()


if __name__ == "__main__":
    main()

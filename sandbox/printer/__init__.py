"""A virtual ESC/POS receipt printer on TCP (port 9100 style) or on a pty (the serial case); every job a PNG.

    with VirtualPrinter(out=Path("/tmp/paper")) as vp:
        vp.listen("127.0.0.1", 0)           # vp.url == "tcp://127.0.0.1:PORT"
        ...                                  # guichet prints to vp.url
        vp.wait_jobs(1)[0].path              # /tmp/paper/0001.png
        vp.behaviour = "paper_out"           # DLE EOT answers say so, and data is dropped, as a real one does

Behaviours: ok, paper_out, cover_open, offline, slow (reads at `slow_rate` bytes/s and answers status late),
disconnect (drops the connection after `disconnect_after` bytes), garbage (answers status with a byte that is
not one). The interpreter is sandbox.printer.escpos; its bounds hold the memory of a hostile job.
"""

from __future__ import annotations

import collections
import os
import pty
import select
import socket
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from drivers.printer.status import status_answer
from sandbox.printer.escpos import Interpreter, PrintedJob

BEHAVIOURS = {
    "ok": "prints everything",
    "paper_out": "answers 'paper end' and drops what it is sent",
    "cover_open": "answers 'cover open' and drops what it is sent",
    "offline": "answers 'offline' and drops what it is sent",
    "slow": "takes bytes slowly and answers status late",
    "disconnect": "drops the connection in the middle of a job",
    "garbage": "answers status requests with a byte that is not a status",
}
MAX_JOBS_KEPT = 200
MAX_JOBS_PER_CONNECTION = 500  # a client cutting paper in a loop is dropped after this many jobs
MAX_FILES = 1000  # PNGs this printer keeps in its directory: the oldest of its own go first


@dataclass
class SavedJob:
    path: Path
    job: PrintedJob


class VirtualPrinter:
    def __init__(self, out: Path, *, dots: int = 576, behaviour: str = "ok", slow_rate: float = 4000.0,
                 slow_delay: float = 2.0, disconnect_after: int = 2000,
                 log: Callable[[str], None] | None = None) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour: {behaviour!r} is not one of {', '.join(BEHAVIOURS)}")
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.dots = dots
        self.behaviour = behaviour
        self.slow_rate = slow_rate
        self.slow_delay = slow_delay
        self.disconnect_after = disconnect_after
        self.log = log or (lambda m: None)
        self.jobs: list[SavedJob] = []
        self.status_requests = 0
        # after the highest number there (a count would reuse a name, and overwrite a kept picture)
        self._seq = max((int(p.stem) for p in out.glob("[0-9]*.png") if p.stem.isdigit()), default=0)
        self._written: collections.deque[Path] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        self.url = ""
        self.path = ""

    # -- behaviours ---------------------------------------------------------------------------------------

    def _status(self, n: int) -> bytes:
        self.status_requests += 1
        b = self.behaviour
        if b == "slow":
            time.sleep(self.slow_delay)
        if b == "garbage":
            return b"\xff\x00"
        return status_answer(n, online=b not in ("offline", "paper_out", "cover_open"), cover_open=b == "cover_open",
                             paper="out" if b == "paper_out" else "ok")

    def _interpreter(self) -> Interpreter:
        return Interpreter(self.dots, status=self._status)

    def _save(self, jobs: list[PrintedJob]) -> None:
        for job in jobs:
            with self._cond:
                self._seq += 1
                path = self.out / f"{self._seq:04d}.png"
                tmp = path.with_suffix(".tmp")
                job.image().save(tmp, format="PNG")
                tmp.replace(path)
                self._written.append(path)
                while len(self._written) > MAX_FILES:
                    self._written.popleft().unlink(missing_ok=True)
                self.jobs.append(SavedJob(path, job))
                del self.jobs[:-MAX_JOBS_KEPT]
                self._cond.notify_all()
            self.log(f"job {path.name}: {job.height} dots, cut={job.cut}, drawer={job.drawer_kicks}"
                     + (f", errors: {'; '.join(job.errors[:3])}" if job.errors else ""))

    def wait_jobs(self, count: int, timeout: float = 20.0) -> list[SavedJob]:
        """The first `count` jobs saved since start (waits for them; TimeoutError if they do not come)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.jobs) >= count, timeout):
                raise TimeoutError(f"virtual printer: {len(self.jobs)} jobs, waited for {count}")
            return list(self.jobs[:count])

    def _serve_stream(self, read: Callable[[], bytes], write: Callable[[bytes], None]) -> None:
        interp = self._interpreter()
        received = jobs = 0
        try:
            while not self._stop.is_set():
                if jobs >= MAX_JOBS_PER_CONNECTION:
                    self.log(f"link: {jobs} jobs on one connection, closing it")
                    return
                data = read()
                if not data:
                    break
                received += len(data)
                interp.accept_paper = self.behaviour not in ("paper_out", "cover_open", "offline")
                if self.behaviour == "disconnect" and received > self.disconnect_after:
                    self.log(f"disconnect after {received} bytes")
                    return
                if self.behaviour == "slow":
                    time.sleep(len(data) / self.slow_rate)
                answer = interp.feed(data)
                done = interp.take_jobs()
                jobs += len(done)
                self._save(done[:max(0, MAX_JOBS_PER_CONNECTION - jobs + len(done))])  # first: a status answered
                # after a cut means its PNG is written
                if answer:
                    write(answer)
        except OSError as e:
            self.log(f"link: {e}")
        finally:
            if jobs < MAX_JOBS_PER_CONNECTION:  # a flooding client's last, uncut job is not kept
                self._save(interp.finish())

    # -- TCP ------------------------------------------------------------------------------------------------

    def listen(self, host: str = "127.0.0.1", port: int = 9100) -> str:
        sock = socket.create_server((host, port))
        sock.settimeout(0.2)
        self._sock = sock
        self.url = f"tcp://{host}:{sock.getsockname()[1]}"
        self.path = self.url
        self._spawn(self._accept_loop)
        return self.url

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve_conn, conn)

    def _serve_conn(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)

        def read() -> bytes:
            while not self._stop.is_set():
                try:
                    return conn.recv(4096)
                except TimeoutError:
                    continue
            return b""

        with conn:
            self._serve_stream(read, conn.sendall)

    # -- pty (the serial case) ---------------------------------------------------------------------------------

    def on_pty(self) -> str:
        master, slave = pty.openpty()
        tty.setraw(slave)
        tty.setraw(master)
        self.path = os.ttyname(slave)
        self.url = f"serial://{self.path}?baud=115200"
        self._pty_fds = (master, slave)

        def read() -> bytes:
            while not self._stop.is_set():
                ready, _, _ = select.select([master], [], [], 0.2)
                if ready:
                    try:
                        return os.read(master, 4096)
                    except OSError:
                        return b""
            return b""

        def write(data: bytes) -> None:
            os.write(master, data)

        def serve() -> None:
            while not self._stop.is_set():  # the line stays: a serial printer outlives its clients
                self._serve_stream(read, write)

        self._spawn(serve)
        return self.path

    # -- life -----------------------------------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=fn, args=args, name="virtual-printer", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        for t in self._threads:
            t.join(timeout=3)
        for fd in getattr(self, "_pty_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

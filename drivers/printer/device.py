"""A receipt printer behind a URL, over python-escpos's transports: status, jobs, cash drawer, with bounded time.

    printer = open_printer("tcp://127.0.0.1:9100", timeout=5)
    printer.status()                 # PrinterStatus(online=True, cover_open=False, paper='ok', ...)
    result = printer.print_job(job)  # PrintResult(ok=True, ...): never raises, whatever the printer does
    printer.kick_drawer()            # ESC p on pin 2

URLs, pyserial-style: `tcp://host:9100`, `serial:///dev/ttyUSB0?baud=19200` (any pyserial URL after
`serial://`: `serial://loop://`, `serial://socket://host:port`), `usb://04b8:0202` (needs pyusb),
`file:///dev/usb/lp0` (write only: no status), `none` (no printer: every job fails as unavailable).
`?status=off` after a tcp, serial or usb URL: a printer that never answers DLE EOT (a TX-only cable, a print
server that relays nothing back) gets its jobs without a status check, reported as status unknown.

Every operation is bounded: a connect, a status answer or a write that takes longer than `timeout` seconds
is a PrinterTimeout, and a whole job gets `timeout` plus the time its bytes take at 9600 baud. The
connection is opened per job and closed after it, so an unplugged or restarted printer costs nothing.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from drivers.printer.status import (
    DLE_EOT,
    STATUS_REQUESTS,
    UNKNOWN,
    PrinterError,
    PrinterNotReady,
    PrinterStatus,
    PrinterTimeout,
    PrinterUnavailable,
    parse_status,
    status_byte,
)

CHUNK = 1024  # bytes per write: the deadline is checked between chunks
FLOOR_RATE = 960  # bytes/s (9600 baud, 8N1): the slowest a printer may take a job before it is given up on
MAX_ANSWER = 16  # a status answer is 1 byte; more than this in the buffer is not a printer talking
LOCK_WAIT = 60.0  # seconds a job waits for another job on the same printer (a long receipt at 9600 baud)

# One lock per printer URL in this process: the receipt screen's worker, the print-queue job and the device
# probe each open their own Printer; two jobs (or a DLE EOT inside a job) on one device would interleave.
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _device_lock(url: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(url.strip(), threading.Lock())


@dataclass(frozen=True)
class PrinterUrl:
    """A parsed printer URL.

    >>> PrinterUrl.parse("serial:///dev/ttyUSB0?baud=19200")
    PrinterUrl(kind='serial', target='/dev/ttyUSB0', port=0, baud=19200)
    >>> PrinterUrl.parse("tcp://10.0.0.5")
    PrinterUrl(kind='tcp', target='10.0.0.5', port=9100, baud=0)
    >>> PrinterUrl.parse("usb://04b8:0e15")
    PrinterUrl(kind='usb', target='04b8:0e15', port=0, baud=0)
    >>> PrinterUrl.parse("tcp://10.0.0.5:9100?status=off").status
    False
    >>> PrinterUrl.parse("lpt://x")
    Traceback (most recent call last):
    ...
    drivers.printer.status.PrinterUnavailable: printer url: 'lpt://x' is not none, usb://, serial://, tcp:// or file://
    """

    kind: str
    target: str
    port: int = 0
    baud: int = 0
    status: bool = field(default=True, repr=False)  # ?status=off: a printer that never answers DLE EOT

    @classmethod
    def parse(cls, url: str) -> PrinterUrl:
        url = url.strip()
        if url in ("", "none"):
            return cls("none", "")
        scheme, sep, rest = url.partition("://")
        bad = PrinterUnavailable(f"printer url: {url!r} is not none, usb://, serial://, tcp:// or file://")
        if not sep:
            raise bad
        rest, _, query = rest.partition("?")
        found = cls._parse(url, scheme, rest, parse_qs(query))
        asked = parse_qs(query).get("status", ["on"])[-1]
        if asked not in ("on", "off"):
            raise PrinterUnavailable(f"printer url: status={asked[:20]!r} is not on or off")
        return replace(found, status=asked == "on")

    @classmethod
    def _parse(cls, url: str, scheme: str, rest: str, query: dict[str, list[str]]) -> PrinterUrl:
        bad = PrinterUnavailable(f"printer url: {url!r} is not none, usb://, serial://, tcp:// or file://")
        if scheme == "tcp":
            parts = urlsplit(f"tcp://{rest}")
            try:
                port = parts.port or 9100
            except ValueError:
                raise PrinterUnavailable(f"printer url: {url!r}: the port is not a number 1-65535") from None
            if not parts.hostname:
                raise PrinterUnavailable(f"printer url: {url!r} names no host")
            return cls("tcp", parts.hostname, port)
        if scheme == "serial":
            path = rest
            baud_text = query.get("baud", ["19200"])[-1]
            if not baud_text.isdigit() or not 300 <= int(baud_text) <= 921600:
                raise PrinterUnavailable(f"printer url: baud={baud_text!r} is not a rate from 300 to 921600")
            if not path:
                raise PrinterUnavailable(f"printer url: {url!r} names no device")
            return cls("serial", path, 0, int(baud_text))
        if scheme == "usb":
            vid, _, pid = rest.partition(":")
            try:
                int(vid, 16), int(pid, 16)
            except ValueError:
                raise PrinterUnavailable(f"printer url: {url!r} is not usb://VID:PID (hex)") from None
            return cls("usb", f"{vid.lower()}:{pid.lower()}")
        if scheme == "file":
            if not rest.startswith("/"):
                raise PrinterUnavailable(f"printer url: {url!r}: file:// needs an absolute path")
            return cls("file", rest)
        raise bad

    @property
    def readable(self) -> bool:
        """Whether the transport carries the printer's answers (status); file:// and none do not."""
        return self.kind in ("tcp", "serial", "usb")


@dataclass
class PrintResult:
    """What became of a job. `ok` False: `error` says why (typed); the job can be queued and sent again."""

    ok: bool
    status: PrinterStatus = UNKNOWN
    error: PrinterError | None = None
    bytes_sent: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "printed" if self.ok else str(self.error)


def _escpos_transport(url: PrinterUrl, timeout: float) -> Any:
    """The python-escpos printer object for a URL (opened lazily by escpos on first use)."""
    if url.kind == "tcp":
        from escpos.printer import Network

        return Network(url.target, url.port, timeout=timeout)
    if url.kind == "serial":
        from escpos.printer import Serial

        class UrlSerial(Serial):
            """escpos's Serial opened by pyserial's serial_for_url (so loop:// and socket:// work too), with a
            write timeout: escpos sets only the read one, and a printer holding CTS would block forever."""

            def open(self, raise_not_found: bool = True) -> None:
                import serial

                try:
                    # exclusive: the TPE's liveness probe (tpe.port naming this port after a USB renumbering)
                    # then finds it Busy instead of rewriting its speed and writing ENQ into a receipt.
                    self.device = serial.serial_for_url(self.devfile, baudrate=self.baudrate, timeout=self.timeout,
                                                        write_timeout=self.timeout, dsrdtr=False,
                                                        exclusive=True if "://" not in self.devfile else None)
                except (ValueError, serial.SerialException) as e:
                    self.device = None
                    raise PrinterUnavailable(f"printer {self.devfile}: {e}") from None

            def _read(self) -> bytes:
                # escpos reads 16 bytes, which pyserial waits the whole timeout for: a status is 1 byte
                first = bytes(self.device.read(1))
                waiting = min(self.device.in_waiting, MAX_ANSWER) if first else 0
                return first + (bytes(self.device.read(waiting)) if waiting else b"")

        return UrlSerial(url.target, baudrate=url.baud, timeout=timeout)
    if url.kind == "usb":
        try:
            from escpos.printer import Usb

            if not Usb.is_usable():
                raise ImportError("pyusb")
        except ImportError:
            raise PrinterUnavailable("printer usb://: pyusb is not installed (pip install pyusb)") from None
        vid, pid = (int(x, 16) for x in url.target.split(":"))
        return Usb(vid, pid, timeout=int(timeout * 1000))
    if url.kind == "file":
        return FileDevice(url.target, timeout)
    raise PrinterUnavailable("no printer configured ([printer] url = \"none\")")


class FileDevice:
    """A printer device file (/dev/usb/lp0) written without blocking: escpos's File open()s and write()s
    blocking, and a printer that takes no data would hold the job (and the drawer) forever. Opened with
    O_NONBLOCK (a FIFO without a reader, or a device that is gone, fails at once); each write waits at most
    `timeout` seconds for the device to take bytes (TimeoutError)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self.device: int | None = None

    def open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_APPEND)
        except OSError as e:
            raise PrinterUnavailable(f"printer file://{self.path}: {e.strerror or e}") from None
        # Another program (a second agent, `guichet receipt print`) printing on the same device: wait for it
        # (flock is advisory: it orders our own processes; the per-URL lock orders this process's threads).
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise PrinterTimeout(f"printer file://{self.path}: busy with another program's job "
                                         f"for {self.timeout:g} s") from None
                time.sleep(0.05)
        self.device = fd

    def _raw(self, data: bytes) -> None:
        assert self.device is not None
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            _, writable, _ = select.select([], [self.device], [], left)
            if not writable:
                raise TimeoutError
            try:
                view = view[os.write(self.device, view):]
            except BlockingIOError:
                continue

    def close(self) -> None:
        if self.device is not None:
            fd, self.device = self.device, None
            os.close(fd)


class Printer:
    """One receipt printer. Thread-safe: every call opens, works and closes its transport while holding the
    process's lock for the URL (two Printer objects on one URL take turns; a job never interleaves another)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout
        self.parsed = PrinterUrl.parse(url)
        self._lock = _device_lock(url)

    def _take(self) -> None:
        if not self._lock.acquire(timeout=self.timeout + LOCK_WAIT):
            raise PrinterTimeout(f"printer {self.url}: busy with another job for {self.timeout + LOCK_WAIT:g} s")

    def __repr__(self) -> str:
        return f"Printer({self.url!r})"

    # -- transport --------------------------------------------------------------------------------------

    def _open(self) -> Any:
        dev = _escpos_transport(self.parsed, self.timeout)
        try:
            dev.open()
            if self.parsed.kind == "tcp" and dev.device is None:
                raise PrinterUnavailable(f"printer {self.url}: cannot connect")
        except PrinterError:
            raise
        except TimeoutError:
            raise PrinterTimeout(f"printer {self.url}: no answer to connect within {self.timeout:g} s") from None
        except Exception as e:  # escpos wraps OSError in DeviceNotFoundError; anything else: same meaning
            raise PrinterUnavailable(f"printer {self.url}: {_one_line(e)}") from None
        return dev

    @staticmethod
    def _close(dev: Any) -> None:
        try:
            dev.close()
        except Exception:  # noqa: BLE001,S110 closing a dead link must not hide why it died
            return

    def _read_status(self, dev: Any) -> PrinterStatus:
        if not self.parsed.readable or not self.parsed.status:
            return UNKNOWN
        answers: dict[int, int] = {}
        for n in STATUS_REQUESTS:
            dev._raw(DLE_EOT + bytes((n,)))
            answers[n] = status_byte(n, self._read_answer(dev, n))
        return parse_status(answers)

    def _read_answer(self, dev: Any, n: int) -> bytes:
        """The bytes answering one request: the first ones to arrive within the timeout (at most MAX_ANSWER)."""
        deadline = time.monotonic() + self.timeout
        while True:
            timed_out = False
            try:
                data = bytes(dev._read()[:MAX_ANSWER])
            except TimeoutError:
                data, timed_out = b"", True
            except OSError as e:
                raise PrinterUnavailable(f"printer {self.url}: {_one_line(e)}") from None
            if data:
                return data
            if self.parsed.kind == "tcp" and not timed_out:  # recv gave b"" before its timeout: closed
                raise PrinterUnavailable(f"printer {self.url}: connection closed while asking DLE EOT {n}")
            if time.monotonic() >= deadline:
                raise PrinterTimeout(f"printer {self.url}: no answer to DLE EOT {n} within {self.timeout:g} s")

    def _send(self, dev: Any, data: bytes) -> int:
        budget = self.timeout + len(data) / FLOOR_RATE
        deadline = time.monotonic() + budget
        sent = 0
        for i in range(0, len(data), CHUNK):
            if time.monotonic() > deadline:
                raise PrinterTimeout(f"printer {self.url}: took more than {budget:.1f} s for {len(data)} bytes")
            chunk = data[i:i + CHUNK]
            try:
                dev._raw(chunk)
            except TimeoutError:
                raise PrinterTimeout(f"printer {self.url}: took no bytes for {self.timeout:g} s") from None
            except Exception as e:  # noqa: BLE001 serial's SerialTimeoutException, OSError, usb errors
                if "timeout" in type(e).__name__.lower():
                    raise PrinterTimeout(f"printer {self.url}: took no bytes for {self.timeout:g} s") from None
                raise PrinterUnavailable(f"printer {self.url}: lost after {sent} bytes: {_one_line(e)}") from None
            sent += len(chunk)
        return sent

    # -- what callers use --------------------------------------------------------------------------------

    def status(self) -> PrinterStatus:
        """The printer's real-time status; raises a PrinterError when it cannot be read at all."""
        self._take()
        try:
            dev = self._open()
            try:
                return self._read_status(dev)
            finally:
                self._close(dev)
        finally:
            self._lock.release()

    def probe(self) -> PrinterStatus | PrinterError:
        """For the device registry and `guichet doctor`: the status, or the typed error in its place."""
        try:
            return self.status()
        except PrinterError as e:
            return e

    def presence(self) -> tuple[str, str]:
        """(state, detail) in the device registry's words (agent.devices.STATES), for its printer probe:
        ready; error + the problem ("paper out", "cover open", "offline"); unresponsive (no answer in time);
        absent (not there: refused, unplugged, no such file); present (file://: there, status unreadable)."""
        if self.parsed.kind == "file":
            there = os.path.exists(self.parsed.target)
            return ("present", "write only: no status") if there else ("absent", f"{self.parsed.target}: no such file")
        got = self.probe()
        if isinstance(got, PrinterTimeout):
            return "unresponsive", str(got)
        if isinstance(got, PrinterUnavailable):
            return "absent", str(got)
        if isinstance(got, PrinterError):
            return "error", str(got)
        return ("ready", "") if got.ready else ("error", got.problem or "")

    def print_job(self, job: bytes, *, check: bool = True) -> PrintResult:
        """Send one job (ESC/POS bytes); the status is read first where the transport allows it and a printer
        that is not ready gets nothing. Never raises: the outcome, typed, is in the PrintResult."""
        started = time.monotonic()
        result = PrintResult(False)
        try:
            self._take()
        except PrinterError as e:
            result.error = e
            result.seconds = time.monotonic() - started
            return result
        try:
            dev = self._open()
            try:
                if check:
                    result.status = self._read_status(dev)
                    if not result.status.ready:
                        raise PrinterNotReady(result.status)
                if check and not self.parsed.status:
                    result.notes.append("status unknown: not asked (status=off in the printer url)")
                result.bytes_sent = self._send(dev, job)
                if check and self.parsed.readable and self.parsed.status:
                    # asked after the job: the printer answers once it has taken every byte before it, so a
                    # paper end or a cover opened during the job is seen here, not on the next one
                    try:
                        after = self._read_status(dev)
                    except PrinterTimeout as e:
                        # every byte was taken and the link is up; a printer busy printing answers late: it is
                        # on paper as far as anyone can tell, and printing it again would be a second copy (a
                        # link that dropped is another story: the bytes may be lost in the network's buffers)
                        result.notes.append(f"printed, status unknown after the job: {e}")
                    else:
                        result.status = after
                        if after.problem:
                            raise PrinterNotReady(after)
                result.ok = True
            finally:
                self._close(dev)
        except PrinterError as e:
            result.error = e
        except Exception as e:  # noqa: BLE001 a driver must not raise into a payment: anything else is named
            result.error = PrinterError(f"printer {self.url}: {type(e).__name__}: {_one_line(e)}")
        finally:
            self._lock.release()
        result.seconds = time.monotonic() - started
        return result

    def kick_drawer(self, pin: int = 2) -> PrintResult:
        """Open the cash drawer (ESC p on pin 2 or 5, python-escpos's pulse)."""
        from escpos.printer import Dummy

        d = Dummy()
        d.cashdraw(pin)
        return self.print_job(bytes(d.output), check=False)


def open_printer(url: str, timeout: float = 5.0) -> Printer:
    """A Printer for a URL; a malformed URL is a PrinterUnavailable naming it."""
    return Printer(url, timeout)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__

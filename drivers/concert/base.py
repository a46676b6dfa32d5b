"""What every Concert link shares, whatever its transport: the typed results, the counters they carry, the
internal signals of an exchange, the settings from ``[tpe]`` and the shape of ``pay``.

    from drivers.concert.base import TerminalLink, Approved
    class MyLink(TerminalLink[MyRequest]):          # eplus_link.ConcertLink and v3_link.V3Link are the two
        protocol = "X"
        def build_request(self, amount, currency): ...           # checked before anything is sent
        def _exchange(self, req, cancel, notify, c): ...          # every outcome a Result (self._result)
        def _check(self): ...                                     # check(): the fuller check
        def _probe(self): ...                                     # the light liveness check (probe())

``probe()`` is the device registry's liveness check: it never waits for, nor disturbs, an exchange in
progress in this process or another (the cashier UI, the headless service, `guichet devices`, doctor and
`guichet tpe` may run at once on one counter). ``pay`` and ``check`` hold the terminal's ``TerminalLock``
(a thread lock plus a flock'd file under /run/lock, whatever the transport) for the whole exchange, waiting
a bounded while for another's probe; ``probe`` only tries it and answers ``Busy`` when it is held or a
payment waits for it.

    link.probe()        # Ready | Busy | Timeout | LinkError; never sends an amount
    link.busy           # True while a payment or check on this terminal runs in this process
    link.last_heard()   # Heard: the newest word on the terminal from any process
``amount_sent`` on every result says whether the request may have reached the terminal: once it may have, a
missing or unreadable answer is *unknown*, never a reason to send the amount again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from drivers.concert.eplus_codec import Response
from drivers.concert.fields import ConcertError
from drivers.concert.v3_codec import V3Response

Answer = Response | V3Response  # what a terminal answered: E+ record or V3 tags; the same attribute names

POLL = 0.02  # seconds between cancel checks while a read waits
UNKNOWN = "; the payment is unknown: settle it from the terminal's ticket"


@dataclass(frozen=True, kw_only=True)
class Result:
    """What came of an exchange. ``amount_sent``: the request may have reached the terminal."""

    amount_sent: bool
    message: str = ""
    naks_received: int = 0
    naks_sent: int = 0
    elapsed: float = 0.0
    bytes_out: int = 0
    bytes_in: int = 0
    _definitive: ClassVar[bool] = False  # Ready, Approved, Refused, Cancelled: True; Timeout, LinkError: unknown

    @property
    def definitive(self) -> bool:
        """The terminal (or the cashier, before anything was sent) settled it: no doubt about the money."""
        return self._definitive

    @property
    def kind(self) -> str:
        return type(self).__name__.lower()


@dataclass(frozen=True, kw_only=True)
class Ready(Result):
    """The terminal is there and listening (E+: ENQ/ACK/EOT; V3: it accepted a connection)."""

    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Busy(Result):
    """``probe`` only: the port is in use (an exchange of ours, or another program holds it); nothing sent."""


@dataclass(frozen=True, kw_only=True)
class Approved(Result):
    response: Answer
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Refused(Result):
    response: Answer
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Cancelled(Result):
    """No money taken: cancelled before the amount left us, or the terminal answered that nothing was done."""

    by: str = "cashier"  # "cashier" | "terminal"
    response: Answer | None = None
    _definitive = True


@dataclass(frozen=True, kw_only=True)
class Timeout(Result):
    stage: str = ""


@dataclass(frozen=True, kw_only=True)
class LinkError(Result):
    stage: str = ""


class LinkDown(Exception):
    """Inside an exchange: the port or connection is gone (becomes a LinkError result). ``errno`` when the
    system gave one (EBUSY/EAGAIN: another program holds the port)."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class Cancel(Exception):
    """Inside an exchange: the cashier cancelled while nothing could have reached the terminal yet."""


@dataclass
class Counters:
    naks_received: int = 0
    naks_sent: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    started: float = field(default_factory=time.monotonic)


RequestT = TypeVar("RequestT")

LOCK_DIR = "/run/lock"  # FHS: the machine's lock files (tmpfs, 1777); every user and process of the counter
LOCK_DIR_ENV = "GUICHET_LOCK_DIR"  # another directory (a machine without /run/lock); every process must agree
MAX_RECORD = 4096  # bytes read from a lock file: it lives in a world-writable directory, so it is hostile input
HOLD_CAP = 30.0  # seconds a payment waits at most for another process's probe or check, whatever it announced
_guard = threading.Lock()
_thread_locks: dict[str, threading.Lock] = {}
_heard: dict[str, Heard] = {}


@dataclass(frozen=True)
class Heard:
    """What the last exchange with a terminal said of it: it sent bytes (``answered``) or stayed silent.
    ``at``: time.monotonic(), which is CLOCK_MONOTONIC on Linux: one clock for every process of the machine.
    The registry takes it as a liveness check it need not make."""

    at: float
    answered: bool
    message: str
    # A payment's outcome is unknown: the terminal may still call back with its answer until then (the
    # payer's answer_timeout + cancel_grace after it; 0: nothing pending).
    answer_until: float = 0.0


class PortBusy(Exception):
    """The terminal's lock was not had: another exchange (this process or another) holds it. One line."""


def lock_dir() -> str:
    """Where the terminals' lock files live: ``$GUICHET_LOCK_DIR``, else /run/lock, else the temp dir."""
    d = os.environ.get(LOCK_DIR_ENV) or LOCK_DIR
    return d if os.path.isdir(d) and os.access(d, os.W_OK | os.X_OK) else tempfile.gettempdir()


def _open_lock_file(path: str) -> int:
    """The lock file, created readable and writable by every user (the service and a technician's CLI may
    run as different users); never through a symlink (a world-writable directory)."""
    flags = os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, os.O_RDWR | flags, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | flags)  # another user's file: flock needs only a descriptor
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # only its owner can; the umask must not shut the others out
    return fd


def _try_flock(fd: int, op: int) -> bool:
    try:
        fcntl.flock(fd, op | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class TerminalLock:
    """One terminal's lock, shared by every thread and every process of the machine: a thread lock, then
    ``fcntl.flock`` on ``<lock_dir>/guichet-tpe-<sha1(key)>.lock``. The kernel lets go of a flock when its
    process dies, so a crash never leaves the terminal locked. A payment or check *waits* (bounded, ``cancel``
    polled) and announces itself in ``.wait`` first: a probe that finds a payment waiting gives way.

        lock = TerminalLock("socket://10.0.0.9:4001")
        with lock.hold("payment", wait=3.0, cancel=event) as held:   # PortBusy when not had within 3 s
            ...; held.heard(result)                                    # shared: every process's registry
        lock.hold("probe", wait=0)                                     # never waits: PortBusy at once
    The file holds one JSON object: who holds it (pid, role, until) and what was last heard of the terminal.
    """

    def __init__(self, key: str) -> None:
        self.key = key
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:20]
        self.path = os.path.join(lock_dir(), f"guichet-tpe-{digest}.lock")
        self.wait_path = self.path[: -len(".lock")] + ".wait"
        with _guard:
            self._thread = _thread_locks.setdefault(key, threading.Lock())

    @property
    def held_here(self) -> bool:
        """An exchange of this process holds the terminal."""
        return self._thread.locked()

    def record(self) -> dict[str, Any]:
        """The lock file's JSON object, read without the lock; {} when missing or malformed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return {}
        try:
            raw = os.pread(fd, MAX_RECORD, 0)
        except OSError:
            return {}
        finally:
            os.close(fd)
        try:
            rec = json.loads(raw.decode())
        except (UnicodeDecodeError, ValueError, RecursionError):  # "[[[[..." nests past the parser's limit
            return {}
        return rec if isinstance(rec, dict) else {}

    def holder(self) -> str:
        """Who holds the terminal, as the lock file says: "pid 123 (payment)", or ""."""
        rec = self.record()
        pid, role = rec.get("pid"), rec.get("role")
        if isinstance(pid, int) and 0 < pid <= 4_194_304 and isinstance(role, str) and role.isalpha() \
                and len(role) < 20:  # Linux's largest pid_max
            return f"pid {pid} ({role})"
        return ""

    def heard(self) -> Heard | None:
        """The last word on the terminal from any process (None: none, or a record that does not parse)."""
        h = self.record().get("heard")
        if not isinstance(h, dict):
            return None
        at, answered, message = h.get("at"), h.get("answered"), h.get("message")
        if not isinstance(at, int | float) or isinstance(at, bool) or not isinstance(answered, bool) \
                or not isinstance(message, str) or not 0 <= at <= time.monotonic():
            return None
        until = h.get("answer_until", 0.0)
        if not isinstance(until, int | float) or isinstance(until, bool) or not at <= until <= at + 3600:
            until = 0.0  # a hostile value must not silence the probe for longer than any real payment
        return Heard(float(at), answered, message[:200], float(until))

    @contextlib.contextmanager
    def hold(self, role: str, *, wait: float, cancel: threading.Event | None = None) -> Iterator[Held]:
        """Hold the terminal for ``role`` ("payment", "check", "probe"); PortBusy (one line) when not had
        within ``wait`` s (0: at once, and a probe also yields to a payment waiting); Cancel if ``cancel`` is
        set while waiting."""
        deadline = time.monotonic() + wait
        if not self._acquire_thread(deadline, cancel):
            raise PortBusy("an exchange with the terminal is in progress in this program")
        fd = -1
        try:
            fd = _open_lock_file(self.path)
            self._acquire_file(fd, role, wait, deadline, cancel)
            held = Held(self, fd)
            held.write(pid=os.getpid(), role=role, until=None)
            try:
                yield held
            finally:
                held.write(pid=None, role=None, until=None)
        finally:
            if fd >= 0:
                os.close(fd)  # also lets go of the flock
            self._thread.release()

    def _acquire_thread(self, deadline: float, cancel: threading.Event | None) -> bool:
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancel()
            if self._thread.acquire(timeout=max(0.0, min(POLL * 5, deadline - time.monotonic()))):
                return True
            if time.monotonic() >= deadline:
                return False

    def _acquire_file(self, fd: int, role: str, wait: float, deadline: float,
                      cancel: threading.Event | None) -> None:
        if wait <= 0:
            if not _try_flock(fd, fcntl.LOCK_EX):
                raise PortBusy(f"another program holds the terminal{self._by()}")
            # A payment waiting for the terminal comes first: the probe gives way.
            wfd = _open_lock_file(self.wait_path)
            try:
                if not _try_flock(wfd, fcntl.LOCK_EX):
                    raise PortBusy("another program is waiting to pay on the terminal")
            finally:
                os.close(wfd)
            return
        wfd = _open_lock_file(self.wait_path)
        try:
            while not _try_flock(wfd, fcntl.LOCK_SH):  # a probe checks it for an instant
                self._pause(deadline, cancel, role)
            while not _try_flock(fd, fcntl.LOCK_EX):
                rec = self.record()
                until = rec.get("until")
                if rec.get("role") in ("probe", "check") and isinstance(until, int | float):
                    # A look from another process announced when it ends: wait it out, bounded.
                    deadline = max(deadline, min(float(until), time.monotonic() + HOLD_CAP) + 0.5)
                self._pause(deadline, cancel, role)
        finally:
            os.close(wfd)

    def _pause(self, deadline: float, cancel: threading.Event | None, role: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancel()
        if time.monotonic() >= deadline:
            raise PortBusy(f"another program holds the terminal{self._by()}; {role} not started")
        time.sleep(POLL)

    def _by(self) -> str:
        who = self.holder()
        return f" ({who})" if who else ""


class Held:
    """The terminal, held: what the exchange learnt goes into the lock file for every process."""

    def __init__(self, lock: TerminalLock, fd: int) -> None:
        self.lock = lock
        self.fd = fd

    def write(self, **fields: Any) -> None:
        rec = {k: v for k, v in {**self.lock.record(), **fields}.items() if v is not None}
        data = json.dumps(rec).encode()[:MAX_RECORD]
        with contextlib.suppress(OSError):  # read-only (another user's file): the lock still works
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)

    def until(self, seconds: float) -> None:
        """Announce when this exchange lets go of the terminal (a waiting payment waits that long)."""
        self.write(until=time.monotonic() + seconds)

    def heard(self, result: Result, answer_wait: float = 0.0) -> None:
        """Record what ``result`` says of the terminal, here and in the shared file (under the lock); an
        unknown payment also how long (``answer_wait`` s) the terminal may still call back with its answer."""
        if isinstance(result, Busy) or (isinstance(result, Cancelled) and not result.bytes_in):
            return  # nothing was asked of the terminal: it said nothing either way
        now = time.monotonic()
        unknown = result.amount_sent and not result.definitive
        h = Heard(now, result.bytes_in > 0, result.message[:200], now + answer_wait if unknown else 0.0)
        with _guard:
            _heard[self.lock.key] = h
        self.write(heard={"at": h.at, "answered": h.answered, "message": h.message, "answer_until": h.answer_until})


def port_lock(port: str) -> threading.Lock:
    """The thread part of ``port``'s TerminalLock (tests hold it to play a payment in progress)."""
    return TerminalLock(port)._thread


def last_heard(key: str) -> Heard | None:
    """The newest word on the terminal of lock key ``key``, from this process or any other."""
    with _guard:
        mine = _heard.get(key)
    shared = TerminalLock(key).heard()
    if mine is None or (shared is not None and shared.at > mine.at):
        return shared
    return mine


class TerminalLink(ABC, Generic[RequestT]):
    """One payment terminal on ``port``; a new port or connection per exchange. Subclasses give the request
    and the exchange; ``pay`` and ``from_config`` are the same for every transport."""

    protocol: ClassVar[str]
    no_port: ClassVar[str] = "tpe.port: no terminal port configured"
    config_keys: ClassVar[tuple[str, ...]] = ()  # [tpe] keys of this transport only (E+: baud, framing)
    ignored_options: ClassVar[tuple[str, ...]] = ()  # the other transport's options, accepted and dropped

    def __init__(
        self,
        port: str,
        *,
        pos_number: str = "01",
        ack_timeout: float = 2.0,
        answer_timeout: float = 180.0,
        max_retries: int = 3,
        cancel_grace: float = 30.0,
    ) -> None:
        if not port:
            raise ConcertError(self.no_port)
        self.port = port
        self.pos_number = pos_number
        self.ack_timeout = ack_timeout
        self.answer_timeout = answer_timeout
        self.max_retries = max_retries
        self.cancel_grace = cancel_grace

    @classmethod
    def from_config(cls, tpe: Any, **overrides: Any) -> Any:
        """From a ``config.schema.TpeConfig``; keyword overrides win (CLI options); the other transport's
        options are ignored."""
        kw: dict[str, Any] = {
            "port": tpe.port,
            "pos_number": tpe.pos_number,
            "ack_timeout": tpe.ack_timeout,
            "answer_timeout": tpe.answer_timeout,
            "max_retries": tpe.max_retries,
            "cancel_grace": getattr(tpe, "cancel_grace", 30.0),
            **{k: getattr(tpe, k) for k in cls.config_keys},
        }
        kw.update({k: v for k, v in overrides.items() if v is not None and k not in cls.ignored_options})
        return cls(**kw)

    @abstractmethod
    def describe(self) -> str:
        """One line for the CLI and doctor: the transport's settings."""

    @abstractmethod
    def _probe(self) -> Result:
        """The light liveness check, the port's lock held: Ready, Busy, Timeout or LinkError."""

    @property
    def lock_key(self) -> str:
        """What names this terminal for its lock: two spellings of one terminal share it (subclasses)."""
        return self.port

    @property
    def lock(self) -> TerminalLock:
        """This terminal's lock, shared by every thread and process of the machine."""
        return TerminalLock(self.lock_key)

    @property
    def port_wait(self) -> float:
        """How long a payment or check waits for the terminal: another process's probe or check (it
        announces longer ones in the lock file), never another payment."""
        return (self.max_retries + 1) * self.ack_timeout + 1.0

    @property
    def busy(self) -> bool:
        """An exchange (payment or check) on this terminal is in progress in this process."""
        return self.lock.held_here

    def last_heard(self) -> Heard | None:
        """The newest word on this terminal from any exchange of any process (payment, check or probe)."""
        return last_heard(self.lock_key)

    def probe(self) -> Result:
        """Liveness for the device registry, when idle: E+ one ENQ awaiting ACK within ``ack_timeout``, V3 a
        connect and close. ``Busy`` at once, touching nothing, while any exchange of any process holds the
        terminal or a payment waits for it."""
        try:
            with self.lock.hold("probe", wait=0) as held:
                held.until(self.ack_timeout + 1.0)
                result = self._probe()
                held.heard(result)
                return result
        except PortBusy as e:
            return Busy(amount_sent=False, message=str(e))

    def check(self) -> Result:
        """Is the terminal there? Ready, Timeout or LinkError; never sends an amount. Holds the terminal like
        a payment (waits for another's probe, bounded)."""
        try:
            with self.lock.hold("check", wait=self.port_wait) as held:
                held.until((self.max_retries + 1) * self.ack_timeout + 1.0)
                result = self._check()
                held.heard(result)
                return result
        except PortBusy as e:
            return LinkError(amount_sent=False, stage="open", message=str(e))
        except Cancel:  # pragma: no cover - check() has no cancel
            return Cancelled(amount_sent=False, message="cancelled before sending")

    def _check(self) -> Result:
        """The check itself, the terminal held (E+: up to max_retries + 1 ENQ; V3: the probe's connect)."""
        return self._probe()

    def alive(self) -> bool:
        """The terminal answered the probe (a busy terminal is alive: it is working for us)."""
        return isinstance(self.probe(), Ready | Busy)

    @abstractmethod
    def build_request(self, amount: int, currency: str) -> RequestT:
        """The debit request, checked completely (AmountError/ConcertError) before anything is sent."""

    @abstractmethod
    def _exchange(self, req: RequestT, cancel: threading.Event | None, notify: Callable[[str], None],
                  c: Counters) -> Result:
        """Send ``req`` and wait for the answer; every outcome a Result."""

    def pay(
        self,
        amount: int,
        currency: str,
        *,
        cancel: threading.Event | None = None,
        on_event: Callable[[str], None] | None = None,
        request: RequestT | None = None,
    ) -> Result:
        """One debit of ``amount`` minor units. Raises AmountError/ConcertError only before anything is sent;
        after that, every outcome is a Result. ``on_event`` hears "pin_on_terminal" and "cancel_on_terminal"."""
        req = request or self.build_request(amount, currency)
        # Waits, bounded and cancellable, for another exchange's probe or check (never disturbs it), here or
        # in another process; a payment waiting makes new probes give way.
        try:
            with self.lock.hold("payment", wait=self.port_wait, cancel=cancel) as held:
                result = self._exchange(req, cancel, on_event or (lambda _key: None), Counters())
                held.heard(result, self.answer_timeout + self.cancel_grace)
        except PortBusy as e:
            return LinkError(amount_sent=False, stage="open", message=f"{e}; amount not sent")
        except Cancel:
            return Cancelled(amount_sent=False, message="cancelled before sending")
        return result

    def _result(self, cls: type[Result], c: Counters, **kw: Any) -> Any:
        return cls(
            naks_received=c.naks_received,
            naks_sent=c.naks_sent,
            bytes_out=c.bytes_out,
            bytes_in=c.bytes_in,
            elapsed=time.monotonic() - c.started,
            **kw,
        )


def close(port: Any) -> None:
    """Close a port or socket that may already be gone."""
    try:
        port.close()
    except Exception:  # noqa: S110 - closing a port that is gone must not mask the result
        pass

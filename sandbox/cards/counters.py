"""The counters a real chip keeps between insertions: ATC, last online ATC, PIN try counter, application
blocked, offline balance. One :class:`Counters` per (PAN, AID).

A virtual card (``sandbox.cards.card.VirtualCard``) seeds each insertion's ``EmvState`` from its store and
writes the counters back after every command that may change them, so the ATC grows from one insertion to
the next as the sandbox acquirer's strict ATC rule expects of a real card.

    store = CounterStore()                          # in memory (a VirtualCard's default: its own)
    store = FileCounterStore(Path("counters.json")) # kept across restarts (demo, `guichet sandbox card`)
    store.put(pan, aid, Counters(atc=0x11, last_online_atc=0x0F, pin_tries=3, blocked=False))
    store.get(pan, aid)                             # -> Counters | None

The file never holds a card number, nor what would give one back: a card is named by its
``drivers.pan.pan_token`` (keyed HMAC) under a random key kept in a sibling file (``counters.json.key``,
0600, created at the first write), and its AID; beside it only the masked PAN. Without the key file the
10^5 candidates a masked PAN leaves cannot be told apart. The file is written atomically (temporary file,
fsync, rename, fsync of the directory; 0600) under an exclusive ``flock`` of the key file, after reading it
again: several processes on one file (two card processes, a card beside the demo) keep each other's cards.
The cards are kept least recently used first, so a full store drops the same card after a reopen.

It is read strictly: a file that is not a regular file (a FIFO, a device, a directory), damaged, too big
(> MAX_FILE_BYTES), holds more than MAX_CARDS cards or a value of the wrong type or range raises one
:class:`CountersFileError` naming the file and the field, e.g. ``counters.json: cards.1f3a….atc: must be an
integer 0..65535``. A write that fails (disk full, directory gone) is logged once per failure and the card
goes on in memory: a store never stops a card.

>>> s = CounterStore(max_cards=2)
>>> s.put("4761739001010010", b"\\xa0\\x00\\x00\\x00\\x03\\x10\\x10", Counters(17, 15, 3, False))
>>> s.get("4761739001010010", bytes.fromhex("A0000000031010")).atc
17
>>> s.get("4761739001010010", bytes.fromhex("A0000000041010")) is None
True
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.pan import mask_pan, masked_pan_fault, pan_token

log = logging.getLogger(__name__)

MAX_CARDS = 1024  # cards a store keeps; the least recently used goes first
MAX_FILE_BYTES = 1 << 20  # 1 MiB: ~250 bytes a card
FILE_VERSION = 2  # 1: cards named by a salted hash with the salt in the file (the PAN could be brute-forced)
MAX_BALANCE = 999_999_999_999  # n12, as 9F5D / 9F79 hold it
MAX_AID = 16  # bytes (ISO 7816-4)
KEY_BYTES = 32
SHOWN = 97  # characters of a card's key an error message quotes: a whole one (64 + ":" + 32), no more
LOCK_WAIT = 5.0  # seconds a write waits for another process's write to the same file before giving up
_CARD_KEY = re.compile(r"[0-9a-f]{64}:(?:[0-9A-F]{2}){0,16}")  # pan_token ":" AID
_KEY_TEXT = re.compile(rb"[0-9a-f]{64}\n?")
_OPEN_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO or a device at the path must not block the open


class CountersFileError(ValueError):
    """A counters file that cannot be used; the message names the file and the field at fault."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = Path(path)  # the counters file, or its key file


@dataclass(frozen=True)
class Counters:
    """What a card keeps of its application between insertions."""

    atc: int
    last_online_atc: int
    pin_tries: int
    blocked: bool
    offline_balance: int | None = None  # minor units; None: the application keeps none

    def checked(self, where: str = "counters") -> Counters:
        """Itself when every value has its type and range; else ValueError naming ``where.field``.

        >>> Counters(70000, 0, 3, False).checked("cards.x")
        Traceback (most recent call last):
        ...
        ValueError: cards.x.atc: must be an integer 0..65535
        >>> Counters(0x10, 0x11, 3, False).checked("cards.x")  # a card's ATC never goes back
        Traceback (most recent call last):
        ...
        ValueError: cards.x.last_online_atc: must not be above the atc (16)
        """
        for name, high in (("atc", 0xFFFF), ("last_online_atc", 0xFFFF), ("pin_tries", 15)):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= high:
                raise ValueError(f"{where}.{name}: must be an integer 0..{high}")
        if self.last_online_atc > self.atc:
            raise ValueError(f"{where}.last_online_atc: must not be above the atc ({self.atc})")
        if type(self.blocked) is not bool:
            raise ValueError(f"{where}.blocked: must be true or false")
        balance = self.offline_balance
        if balance is not None and (type(balance) is not int or not 0 <= balance <= MAX_BALANCE):
            raise ValueError(f"{where}.offline_balance: must be null or an integer 0..{MAX_BALANCE}")
        return self


FIELDS = frozenset(Counters.__dataclass_fields__)
Cards = OrderedDict[str, tuple[str, Counters]]  # card key -> (masked PAN, counters), least recently used first


class CounterStore:
    """Counters per (PAN, AID) in memory, bounded to `max_cards` (least recently used dropped). Thread-safe.

    Cards are named by their ``pan_token`` under this store's own random key (never kept anywhere)."""

    def __init__(self, max_cards: int = MAX_CARDS) -> None:
        self.max_cards = max_cards
        self._cards: Cards = OrderedDict()
        self._lock = threading.Lock()
        self._key = secrets.token_bytes(KEY_BYTES)

    def key(self, pan: str, aid: bytes) -> str:
        """The card's name in this store: its keyed token and the AID, never its number."""
        if len(aid) > MAX_AID:
            raise ValueError(f"aid: {len(aid)} bytes, at most {MAX_AID}")
        return f"{pan_token(pan, self._key)}:{aid.hex().upper()}"

    def get(self, pan: str, aid: bytes) -> Counters | None:
        with self._lock:
            self._refresh()
            key = self.key(pan, aid)
            found = self._cards.get(key)
            if found is None:
                return None
            self._cards.move_to_end(key)
            return found[1]

    def put(self, pan: str, aid: bytes, counters: Counters) -> None:
        counters.checked()
        key = self.key(pan, aid)
        with self._lock:
            old = self._cards.get(key)
            if old is not None and old[1] == counters:
                return
            self._set(key, pan, counters)

    def __len__(self) -> int:
        return len(self._cards)

    def _set(self, key: str, pan: str, counters: Counters) -> None:
        self._cards[key] = (_masked(pan), counters)
        self._cards.move_to_end(key)
        while len(self._cards) > self.max_cards:
            self._cards.popitem(last=False)

    def _refresh(self) -> None:
        """Called with the lock held before a read (the file store takes in another process's writes)."""


class FileCounterStore(CounterStore):
    """A :class:`CounterStore` kept in a JSON file (and its key in ``<file>.key``), shared by processes.

    Opening raises :class:`CountersFileError` (one line: the file, the field) for a file that is not one, or
    for cards whose key file is gone. A missing file is an empty store, written at the first change; its key
    file is made when the store is opened. Each change re-reads the file under the key file's lock, applies
    itself and rewrites the file; a read first takes in what another process wrote since (the file's inode,
    time and size tell).
    """

    def __init__(self, path: Path | str, max_cards: int = MAX_CARDS) -> None:
        super().__init__(max_cards)
        self.path = Path(path)
        self.key_path = self.path.with_name(self.path.name + ".key")
        self.write_errors = 0
        self._key_fd: int | None = None  # open for the store's life: its flock guards every write
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime, size) of the file as last read
        self._unsaved: set[str] = set()  # cards changed here whose write failed: kept over the file's
        self._read_failed = False
        cards = self._read()
        key = self._open_key(create=not cards)
        if key is None:
            raise CountersFileError(self.key_path, f"missing, and {self.path.name} names {len(cards)} card(s) with "
                                    "it (delete both files to start the cards afresh)")
        self._key, self._cards = key, cards

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the key file (the store still answers, from memory)."""
        fd, self._key_fd = getattr(self, "_key_fd", None), None
        if fd is not None:
            os.close(fd)

    def _open_key(self, *, create: bool) -> bytes | None:
        """The key in the key file, kept open for its lock; with ``create`` one is made when there is none.
        None: no key and not ``create``. CountersFileError: a key file that is not one or cannot be made."""
        flags = os.O_RDWR | os.O_NOFOLLOW | _OPEN_FLAGS | (os.O_CREAT if create else 0)
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.key_path, flags, 0o600)
        except FileNotFoundError:
            if create:
                raise CountersFileError(self.key_path, "cannot be created (its directory is missing)") from None
            return None
        except OSError as e:
            raise CountersFileError(self.key_path, f"cannot be opened ({e.strerror or e})") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise CountersFileError(self.key_path, "not a regular file")
            if mode & 0o077:
                os.fchmod(fd, 0o600)
            with _flock(fd, self.key_path):  # two stores opened at once make one key
                raw = os.pread(fd, 2 * KEY_BYTES + 2, 0)
                if not raw and create:
                    raw = secrets.token_hex(KEY_BYTES).encode() + b"\n"
                    os.pwrite(fd, raw, 0)
                    os.fsync(fd)
                    _fsync_dir(self.key_path.parent)
            if raw and not _KEY_TEXT.fullmatch(raw):
                raise CountersFileError(self.key_path, f"must hold the store's key: {2 * KEY_BYTES} lowercase hex "
                                        "digits")
        except OSError as e:
            os.close(fd)
            raise CountersFileError(self.key_path, f"cannot be used ({e.strerror or e})") from None
        except BaseException:
            os.close(fd)
            raise
        if not raw:  # an empty key file (a crash as it was made) beside cards: they are lost to us
            os.close(fd)
            return None
        self._key_fd = fd
        return bytes.fromhex(raw[: 2 * KEY_BYTES].decode("ascii"))

    # ---- reading and writing the file

    def _read(self) -> Cards:
        """The cards in the file (none when there is no file); CountersFileError naming the field at fault."""
        try:
            fd = os.open(self.path, os.O_RDONLY | _OPEN_FLAGS)
        except FileNotFoundError:
            self._seen = None
            return OrderedDict()
        except OSError as e:
            raise CountersFileError(self.path, f"cannot be read ({e.strerror or e})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
                raise CountersFileError(self.path, "not a regular file")
            raw = b""
            while len(raw) <= MAX_FILE_BYTES:
                chunk = os.read(fd, MAX_FILE_BYTES + 1 - len(raw))
                if not chunk:
                    break
                raw += chunk
        except OSError as e:
            raise CountersFileError(self.path, f"cannot be read ({e.strerror or e})") from None
        finally:
            os.close(fd)
        self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if len(raw) > MAX_FILE_BYTES:
            raise CountersFileError(self.path, f"more than {MAX_FILE_BYTES} bytes: not a counters file")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            raise CountersFileError(self.path, f"not JSON{where}") from None
        try:
            return _parse(data, self.max_cards)
        except ValueError as e:
            raise CountersFileError(self.path, str(e)) from None

    def _merge(self) -> None:
        """The file's cards, with this store's unsaved changes over them (most recent last)."""
        cards = self._read()
        for key in self._unsaved:
            if key in self._cards:
                cards[key] = self._cards[key]
                cards.move_to_end(key)
        while len(cards) > self.max_cards:
            cards.popitem(last=False)
        self._cards = cards

    def _refresh(self) -> None:
        try:
            try:
                st = os.stat(self.path)
                seen: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                seen = None
            if seen != self._seen:  # another process wrote it since
                self._merge()
            self._read_failed = False
        except (OSError, CountersFileError) as e:
            if not self._read_failed:  # once per spell of failures
                self._read_failed = True
                log.warning("card counters not read again from %s (%s): going on with those in memory",
                            self.path, _why(e))

    def put(self, pan: str, aid: bytes, counters: Counters) -> None:
        counters.checked()
        key = self.key(pan, aid)
        with self._lock:
            try:
                if self._key_fd is None:
                    raise OSError(errno.EBADF, "the store is closed")
                with _flock(self._key_fd, self.key_path):
                    self._merge()
                    old = self._cards.get(key)
                    if old is not None and old[1] == counters:
                        return
                    self._set(key, pan, counters)
                    self._unsaved.add(key)
                    self._write()
                    self._unsaved.clear()
            except (OSError, CountersFileError) as e:  # the card goes on with its counters in memory
                old = self._cards.get(key)
                if old is None or old[1] != counters:
                    self._set(key, pan, counters)
                    self._unsaved.add(key)
                self._unsaved &= set(self._cards)
                self.write_errors += 1
                log.warning("card counters not saved to %s (%s): kept in memory", self.path, _why(e))

    def _write(self) -> None:
        """The whole file, atomically and durably: temporary file, fsync, rename, fsync of the directory."""
        data = {"version": FILE_VERSION,
                "cards": {k: {"pan_masked": m, **asdict(c)} for k, (m, c) in self._cards.items()}}
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: 0600 already
                json.dump(data, f, indent=1)  # not sorted: the cards' order is their use
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
            _fsync_dir(self.path.parent)  # the rename itself survives a power cut
            st = os.stat(self.path)
            self._seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


@contextmanager
def _flock(fd: int, path: Path) -> Iterator[None]:
    """An exclusive flock on fd, waited for at most LOCK_WAIT seconds (then OSError: the write fails)."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OSError(errno.EWOULDBLOCK, f"{path} held by another process for {LOCK_WAIT:g} s") from None
            time.sleep(0.01)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _why(e: BaseException) -> str:
    return (e.strerror or str(e)) if isinstance(e, OSError) else str(e)


def _masked(pan: str) -> str:
    try:
        return mask_pan(pan)
    except ValueError:  # a hostile test card's "number": shown as nothing
        return "****"


def _shown(name: str) -> str:
    """A name out of the file as an error message quotes it: one line, at most SHOWN characters, escaped."""
    return name[:SHOWN].encode("unicode_escape").decode("ascii")[: 2 * SHOWN]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse(data: Any, max_cards: int) -> Cards:
    """The cards of a counters file's JSON, in the file's order; ValueError names the field at fault."""
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    unknown = set(data) - {"version", "cards"}
    if data.get("version") != FILE_VERSION:
        raise ValueError(f"version: must be {FILE_VERSION}")
    if unknown:
        raise ValueError(f"{_shown(sorted(unknown)[0])}: unknown field")
    cards = data.get("cards")
    if not isinstance(cards, dict):
        raise ValueError("cards: must be an object")
    if len(cards) > max_cards:
        raise ValueError(f"cards: {len(cards)} cards, at most {max_cards}")
    out: Cards = OrderedDict()
    for key, entry in cards.items():
        where = f"cards.{_shown(key)}"
        if not (isinstance(key, str) and _CARD_KEY.fullmatch(key)):
            raise ValueError(f"{where}: the key must be a card token (64 lowercase hex digits), ':' and the AID "
                             "in hex")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object")
        extra = set(entry) - FIELDS - {"pan_masked"}
        if extra:
            raise ValueError(f"{where}.{_shown(sorted(extra)[0])}: unknown field")
        missing = (FIELDS - {"offline_balance"}) - set(entry)
        if missing:
            raise ValueError(f"{where}.{sorted(missing)[0]}: missing")
        masked = entry.get("pan_masked", "****")
        if masked_pan_fault(masked) and masked != "****":
            raise ValueError(f"{where}.pan_masked: must be a masked card number")
        values: dict[str, Any] = {k: entry.get(k) for k in FIELDS}
        counters = Counters(**values)
        out[key] = (masked, counters.checked(where))
    return out

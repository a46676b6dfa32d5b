"""The counters a real chip keeps between insertions: ATC, last online ATC, PIN try counter, application
blocked, offline balance. One :class:`Counters` per (PAN, AID).

A virtual card (``sandbox.cards.card.VirtualCard``) seeds each insertion's ``EmvState`` from its store and
writes the counters back after every command that may change them, so the ATC grows from one insertion to
the next as the sandbox acquirer's strict ATC rule expects of a real card.

    store = CounterStore()                          # in memory (a VirtualCard's default: its own)
    store = FileCounterStore(Path("counters.json")) # kept across restarts (demo, `guichet sandbox card --counters`)
    store.put(pan, aid, Counters(atc=0x11, last_online_atc=0x0F, pin_tries=3, blocked=False))
    store.get(pan, aid)                             # -> Counters | None

The file never holds a card number: each card is a salted SHA-256 of PAN and AID (the salt is the file's
own), shown with its masked PAN. It is written atomically (temporary file, fsync, rename; 0600) and read
strictly: a file that is damaged, too big (> MAX_FILE_BYTES), holds more than MAX_CARDS cards or a value of
the wrong type or range raises one :class:`CountersFileError` naming the file and the field, e.g.
``counters.json: cards.1f3a….atc: must be an integer 0..65535``. A write that fails (disk full, directory
gone) is logged once per failure and the card goes on in memory: a store never stops a card.

>>> s = CounterStore(max_cards=2)
>>> s.put("4761739001010010", b"\\xa0\\x00\\x00\\x00\\x03\\x10\\x10", Counters(17, 15, 3, False))
>>> s.get("4761739001010010", bytes.fromhex("A0000000031010")).atc
17
>>> s.get("4761739001010010", bytes.fromhex("A0000000041010")) is None
True
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drivers.pan import mask_pan, masked_pan_fault

log = logging.getLogger(__name__)

MAX_CARDS = 1024  # cards a store keeps; the least recently used goes first
MAX_FILE_BYTES = 1 << 20  # 1 MiB: ~200 bytes a card
FILE_VERSION = 1
MAX_BALANCE = 999_999_999_999  # n12, as 9F5D / 9F79 hold it


class CountersFileError(ValueError):
    """A counters file that cannot be used; the message names the file and the field at fault."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{path}: {message}")


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
        """
        for name, high in (("atc", 0xFFFF), ("last_online_atc", 0xFFFF), ("pin_tries", 15)):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= high:
                raise ValueError(f"{where}.{name}: must be an integer 0..{high}")
        if type(self.blocked) is not bool:
            raise ValueError(f"{where}.blocked: must be true or false")
        balance = self.offline_balance
        if balance is not None and (type(balance) is not int or not 0 <= balance <= MAX_BALANCE):
            raise ValueError(f"{where}.offline_balance: must be null or an integer 0..{MAX_BALANCE}")
        return self


FIELDS = frozenset(Counters.__dataclass_fields__)


class CounterStore:
    """Counters per (PAN, AID) in memory, bounded to `max_cards` (least recently used dropped). Thread-safe."""

    def __init__(self, max_cards: int = MAX_CARDS) -> None:
        self.max_cards = max_cards
        self._cards: OrderedDict[str, tuple[str, Counters]] = OrderedDict()  # key -> (masked PAN, counters)
        self._lock = threading.Lock()
        self._salt = secrets.token_hex(16)

    def key(self, pan: str, aid: bytes) -> str:
        """The card's name in this store: never its number."""
        return hashlib.sha256(f"{self._salt}|{pan}|{aid.hex().upper()}".encode()).hexdigest()[:32]

    def get(self, pan: str, aid: bytes) -> Counters | None:
        key = self.key(pan, aid)
        with self._lock:
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
            self._cards[key] = (_masked(pan), counters)
            self._cards.move_to_end(key)
            while len(self._cards) > self.max_cards:
                self._cards.popitem(last=False)
            self._changed()

    def __len__(self) -> int:
        return len(self._cards)

    def _changed(self) -> None:
        """Called with the lock held after a change (the file store writes itself)."""


class FileCounterStore(CounterStore):
    """A :class:`CounterStore` kept in a JSON file, read once when opened and rewritten after each change.

    Opening raises :class:`CountersFileError` (one line: the file, the field) for a file that is not one.
    A missing file is an empty store, created at the first change.
    """

    def __init__(self, path: Path | str, max_cards: int = MAX_CARDS) -> None:
        super().__init__(max_cards)
        self.path = Path(path)
        self.write_errors = 0
        self._load()

    def _load(self) -> None:
        try:
            with self.path.open("rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return
        except OSError as e:
            raise CountersFileError(self.path, f"cannot be read ({e.strerror or e})") from None
        if len(raw) > MAX_FILE_BYTES:
            raise CountersFileError(self.path, f"more than {MAX_FILE_BYTES} bytes: not a counters file")
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            raise CountersFileError(self.path, f"not JSON{where}") from None
        try:
            self._salt, cards = _parse(data, self.max_cards)
        except ValueError as e:
            raise CountersFileError(self.path, str(e)) from None
        self._cards = cards

    def _changed(self) -> None:
        data = {"version": FILE_VERSION, "salt": self._salt,
                "cards": {k: {"pan_masked": m, **asdict(c)} for k, (m, c) in self._cards.items()}}
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: 0600 already
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            tmp = None
        except OSError as e:  # the card goes on with its counters in memory
            self.write_errors += 1
            log.warning("card counters not saved to %s (%s): kept in memory", self.path, e.strerror or e)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _masked(pan: str) -> str:
    try:
        return mask_pan(pan)
    except ValueError:  # a hostile test card's "number": shown as nothing
        return "****"


def _shown(name: str) -> str:
    """A name out of the file as an error message quotes it: one line, at most 40 characters, escaped."""
    return name[:40].encode("unicode_escape").decode("ascii")[:80]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse(data: Any, max_cards: int) -> tuple[str, OrderedDict[str, tuple[str, Counters]]]:
    """The salt and the cards of a counters file's JSON; ValueError names the field at fault."""
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object")
    unknown = set(data) - {"version", "salt", "cards"}
    if unknown:
        raise ValueError(f"{_shown(sorted(unknown)[0])}: unknown field")
    if data.get("version") != FILE_VERSION:
        raise ValueError(f"version: must be {FILE_VERSION}")
    salt = data.get("salt")
    if not isinstance(salt, str) or not 16 <= len(salt) <= 64:
        raise ValueError("salt: must be a string of 16 to 64 characters")
    cards = data.get("cards")
    if not isinstance(cards, dict):
        raise ValueError("cards: must be an object")
    if len(cards) > max_cards:
        raise ValueError(f"cards: {len(cards)} cards, at most {max_cards}")
    out: OrderedDict[str, tuple[str, Counters]] = OrderedDict()
    for key, entry in cards.items():
        where = f"cards.{_shown(key)}"
        if not (isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key)):
            raise ValueError(f"{where}: the key must be 32 lowercase hex digits")
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
    return salt, out

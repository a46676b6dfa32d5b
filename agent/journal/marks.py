"""The journal's two companions outside its database file: the high-water mark and the parked outcomes.

    hw = HighWater(state_dir / HWM_NAME); hw.write(42, payment_id, sync=True); hw.read()
    (42, '0193...')
    parked = PendingOutcomes(state_dir / PENDING_NAME); parked.add(record)   # fsynced; Journal replays it
    read_high_water(path), read_pending(path)                                 # for doctor, read-only

Both are fixed-size records with a CRC, written with pwrite on a descriptor kept open, so a torn write
is found and a power cut never leaves them ahead of what they vouch for.
"""

from __future__ import annotations

import builtins
import logging
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from agent.errors import StorageError
from agent.storage import open_private, storage_errors

log = logging.getLogger("guichet.journal")


HWM_NAME = "journal.hwm"
# One record of the high-water mark: magic, receipt sequence, payment id, CRC-32 of the rest. Two slots
# (by the sequence's parity), so a torn write of one leaves the other, one payment behind, readable.
_HWM = struct.Struct("<4sQ36sI")
_HWM_MAGIC = b"GHW1"
_HWM_SLOT = 64


class HighWater:
    """The journal's high-water mark, kept OUTSIDE the database file: the last receipt sequence and payment
    id the journal committed. A journal that lost committed pages (a damaged WAL frame drops every later
    frame silently) is found behind it on open.

    Written after each commit that creates payments, one pwrite of a fixed record on a descriptor kept
    open, then fdatasync'ed (`write(..., sync=True)`, as `create` does): a power cut that damages the WAL
    cannot take payments with it unseen, and a crash leaves the mark behind the journal, never ahead.

        hw = HighWater(state_dir / HWM_NAME); hw.write(42, payment_id); hw.read()
        (42, '0193...')
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = open_private(path)
        self.seq = 0  # the highest sequence this process wrote or read

    def read(self) -> tuple[int, str]:
        """(sequence, payment id) of the latest whole record; (0, "") when there is none."""
        assert self._fd is not None
        best = _parse_high_water(os.pread(self._fd, 2 * _HWM_SLOT, 0))
        self.seq = max(self.seq, best[0])
        return best

    def write(self, seq: int, payment_id: str, *, sync: bool = False) -> None:
        """Record that the journal committed sequence `seq` (payment `payment_id`); never moves back.
        `sync`: on disk when this returns (one fdatasync: the file's size never changes)."""
        if seq <= self.seq or self._fd is None:
            return
        body = _HWM.pack(_HWM_MAGIC, seq, payment_id.encode("ascii", "replace")[:36], 0)[: _HWM.size - 4]
        os.pwrite(self._fd, body + struct.pack("<I", zlib.crc32(body)), (seq % 2) * _HWM_SLOT)
        self.seq = seq
        if sync:
            os.fdatasync(self._fd)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass  # behind after a power cut at worst: harmless
            os.close(self._fd)
            self._fd = None


def _parse_high_water(data: bytes) -> tuple[int, str]:
    """(sequence, payment id) of the latest whole record in the mark file's bytes; (0, "") if none."""
    best = (0, "")
    for slot in (0, 1):
        raw = data[slot * _HWM_SLOT : slot * _HWM_SLOT + _HWM.size]
        if len(raw) < _HWM.size:
            continue
        magic, seq, pid, crc = _HWM.unpack(raw)
        if magic != _HWM_MAGIC or zlib.crc32(raw[: _HWM.size - 4]) != crc:
            continue  # never written, or torn: the other slot holds the one before
        if seq > best[0]:
            best = (seq, pid.rstrip(b"\0").decode("ascii", "replace"))
    return best


def read_high_water(path: Path) -> tuple[int, str]:
    """The mark file at `path`, read-only (never created, never chmod'ed): (0, "") if it does not exist.
    Raises OSError if it exists but cannot be read. For readers that are not the journal (doctor)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return 0, ""
    try:
        return _parse_high_water(os.pread(fd, 2 * _HWM_SLOT, 0))
    finally:
        os.close(fd)


class MarkReading(NamedTuple):
    """The high-water mark and the journal's receipt counter, read in that order (`compare_high_water`)."""

    mark: int  # the mark file's sequence
    payment_id: str  # the mark's payment id ("" if unknown)
    counter: int  # the journal's receipt counter

    @property
    def lost(self) -> bool:
        """Committed payments are missing from the journal: the mark is ahead of it."""
        return self.mark > self.counter


def compare_high_water(read_mark: Callable[[], tuple[int, str]], read_counter: Callable[[], int]) -> MarkReading:
    """Read the mark, THEN the journal's counter. A writer moves the mark after its commit, so a mark read
    first is always covered by a counter read next, unless payments were really lost: read the other way
    round, a payment committed in between looks like a loss. The one place that order lives (the journal
    on open, the doctor)."""
    seq, pid = read_mark()
    return MarkReading(seq, pid, read_counter())


PENDING_NAME = "journal.pending"
# Outcomes the journal could not write (disk full, I/O error), kept until it can: a file of fixed slots
# written in place, preallocated while there is room, so that parking an outcome needs no new block.
_PENDING_SLOTS = 32
_PENDING_SLOT = 2048
_PENDING_HEAD = struct.Struct("<4sII")  # magic, length, CRC-32 of the JSON
_PENDING_MAGIC = b"GPO1"


def _parse_pending(data: bytes) -> builtins.list[tuple[int, dict[str, Any]]]:
    """(slot, record) of every whole record in journal.pending's bytes, oldest slot first; only the first
    _PENDING_SLOTS slots are ever used."""
    out = []
    for slot in range(min(len(data) // _PENDING_SLOT, _PENDING_SLOTS)):
        raw = data[slot * _PENDING_SLOT : (slot + 1) * _PENDING_SLOT]
        magic, length, crc = _PENDING_HEAD.unpack_from(raw)
        body = raw[_PENDING_HEAD.size : _PENDING_HEAD.size + length]
        if magic != _PENDING_MAGIC or len(body) != length or zlib.crc32(body) != crc:
            continue  # free, or torn
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((slot, record))
    return out


def read_pending(path: Path) -> builtins.list[dict[str, Any]]:
    """The outcomes parked in journal.pending at `path`, read-only ([] if there is no file); for readers
    that are not the journal (doctor). Raises OSError if it exists but cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return []
    try:
        return [r for _, r in _parse_pending(os.pread(fd, _PENDING_SLOTS * _PENDING_SLOT, 0))]
    finally:
        os.close(fd)


class PendingOutcomes:
    """Outcomes (an approval above all) that the journal failed to write, parked until it can.

    Each is one JSON record in one of _PENDING_SLOTS slots of a preallocated file (0600; no PAN: a card here
    is what the journal stores, masked and tokenized), fsynced; `Journal.replay_pending` writes them into the
    journal and clears their slots. A torn or never-written slot fails its CRC and is free. Every failure is
    a StorageError (one line); `add` raises it too when every slot is taken, rather than overwrite one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = open_private(path)
        self._fd: int | None = fd
        size = os.fstat(fd).st_size
        if size < _PENDING_SLOTS * _PENDING_SLOT:
            try:  # real zeros, not a hole: writing into the slots later must not need a free block
                os.pwrite(fd, bytes(_PENDING_SLOTS * _PENDING_SLOT - size), size)
                os.fsync(fd)
            except OSError as e:
                log.warning("%s: cannot preallocate (%s)", path, e.strerror)
        self.count = len(self.items())

    def items(self) -> builtins.list[tuple[int, dict[str, Any]]]:
        """(slot, record) of every parked outcome, oldest slot first."""
        if self._fd is None:
            return []
        with storage_errors(self.path, "cannot read the parked outcomes"):
            data = os.pread(self._fd, _PENDING_SLOTS * _PENDING_SLOT, 0)
        return _parse_pending(data)

    def add(self, record: dict[str, Any]) -> None:
        """Park `record` in a free slot, on disk when this returns; StorageError if it cannot be (no free
        slot, record too big, disk error): never overwrites a parked outcome."""
        if self._fd is None:
            raise StorageError(f"{self.path}: closed")
        body = orjson.dumps(record)
        if len(body) > _PENDING_SLOT - _PENDING_HEAD.size:
            raise StorageError(f"{self.path}: the outcome ({len(body)} bytes) does not fit a slot")
        used = {slot for slot, _ in self.items()}
        free = next((n for n in range(_PENDING_SLOTS) if n not in used), None)
        if free is None:
            raise StorageError(
                f"{self.path}: all {_PENDING_SLOTS} slots hold outcomes not yet written to the journal;"
                " free disk space so they can be"
            )
        with storage_errors(self.path, "cannot park the outcome"):
            os.pwrite(self._fd, _PENDING_HEAD.pack(_PENDING_MAGIC, len(body), zlib.crc32(body)) + body,
                      free * _PENDING_SLOT)
            os.fsync(self._fd)
        self.count = len(used) + 1

    def clear(self, slot: int) -> None:
        """Free `slot`: the whole slot zeroed (nothing of the outcome stays behind), fsynced."""
        if self._fd is not None:
            with storage_errors(self.path, "cannot clear a parked outcome"):
                os.pwrite(self._fd, bytes(_PENDING_SLOT), slot * _PENDING_SLOT)
                os.fsync(self._fd)
            self.count = max(0, self.count - 1)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

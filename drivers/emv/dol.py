"""Data Object Lists (PDOL ``9F38``, CDOL ``8C``/``8D``): parse the tag/length list, fill it from terminal data.

>>> pdol = bytes.fromhex("9F66049F02065F2A02")
>>> [(hex(t), n) for t, n in parse_dol(pdol)]
[('0x9f66', 4), ('0x9f02', 6), ('0x5f2a', 2)]
>>> build_dol(pdol, {0x9F02: bytes.fromhex("000000012345"), 0x5F2A: bytes.fromhex("0012")}).hex()
'000000000000000123450012'

An entry of length 0 asks for nothing and emits nothing. ``limit`` bounds the total a card may ask for (the
data of a short APDU is at most 255 bytes): a DOL asking for more is a :class:`TLVError` naming the entry,
raised before anything is built or sent.

>>> build_dol(bytes.fromhex("9F0200" "5F2A02"), {0x9F02: bytes(6), 0x5F2A: bytes.fromhex("0012")}).hex()
'0012'
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.emv.tags import fmt
from drivers.emv.tlv import TLVError, _read_tag


def _entries(dol: bytes) -> list[tuple[int, int, int]]:
    """``[(tag, length, offset of the entry), ...]``."""
    out: list[tuple[int, int, int]] = []
    pos = 0
    while pos < len(dol):
        start = pos
        tag, pos = _read_tag(dol, pos, len(dol))
        if pos >= len(dol):
            raise TLVError(f"DOL entry {tag:X} has no length", pos)
        length = dol[pos]
        if length & 0x80:
            raise TLVError(f"DOL entry {tag:X} has a multi-byte length", pos)
        out.append((tag, length, start))
        pos += 1
    return out


def parse_dol(dol: bytes) -> list[tuple[int, int]]:
    """``[(tag, length), ...]``; :class:`TLVError` with the offset if the list is truncated."""
    return [(tag, length) for tag, length, _ in _entries(dol)]


def fit(tag: int, value: bytes, length: int) -> bytes:
    """EMV Book 3 5.4: numeric values are left-padded with zeros / cut on the left; others right."""
    if length == 0:
        return b""
    if len(value) == length:
        return value
    if fmt(tag) == "n":
        return value[-length:] if len(value) > length else bytes(length - len(value)) + value
    if fmt(tag) == "cn":
        return value[:length] if len(value) > length else value + b"\xff" * (length - len(value))
    return value[:length] if len(value) > length else value + bytes(length - len(value))


def dol_length(dol: bytes, limit: int | None = None) -> int:
    """The number of bytes ``dol`` asks for; :class:`TLVError` naming the entry that passes ``limit``."""
    total = 0
    for tag, length, offset in _entries(dol):
        total += length
        if limit is not None and total > limit:
            raise TLVError(f"DOL asks for more than {limit} bytes (entry {tag:X} brings it to {total})", offset)
    return total


def build_dol(dol: bytes, data: Mapping[int, bytes], *, limit: int | None = None) -> bytes:
    """The concatenated values the card asked for; unknown tags are zero-filled, as EMV requires.

    Entries of length 0 emit nothing; more than ``limit`` bytes in all is a :class:`TLVError`."""
    dol_length(dol, limit)
    out = bytearray()
    for tag, length in parse_dol(dol):
        if length == 0:
            continue  # value[-0:] would be the whole value: a zero-length entry asks for nothing
        value = data.get(tag)
        out += bytes(length) if value is None else fit(tag, value, length)
    return bytes(out)

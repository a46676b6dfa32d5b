"""Strict BER-TLV (EMV Book 3 annex B): multi-byte tags, long lengths, constructed templates.

Malformed input raises :class:`TLVError` with the byte offset at fault, never an IndexError:

>>> items = decode(bytes.fromhex("6F058403010203"))
>>> items[0].tag == 0x6F, items[0].children[0].value.hex()
(True, '010203')
>>> encode(items).hex().upper()
'6F058403010203'
>>> try:
...     decode(bytes.fromhex("5A0847"))
... except TLVError as e:
...     print(e.offset, e)
1 TLV: value of tag 5A runs past the end (needs 8 bytes, 1 left) at byte 1

Tags are ints (``0x9F38``); a tag is constructed when bit 6 of its first byte is set, and then its
value is parsed as children. ``00`` bytes between objects are padding (EMV allows it) and are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_DEPTH = 16
MAX_TAG_BYTES = 4
MAX_LENGTH_BYTES = 4


class TLVError(ValueError):
    """Malformed BER-TLV; ``offset`` is the index in the outermost buffer of the byte at fault."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"TLV: {message} at byte {offset}")
        self.offset = offset


def tag_bytes(tag: int) -> bytes:
    """The encoded bytes of an int tag: ``tag_bytes(0x9F38) == b'\\x9f\\x38'``."""
    if tag <= 0:
        raise TLVError(f"tag {tag:#x} is not a valid tag", 0)
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    _check_tag_bytes(raw)
    return raw


def _check_tag_bytes(raw: bytes) -> None:
    first = raw[0]
    multi = first & 0x1F == 0x1F
    if not multi and len(raw) != 1:
        raise TLVError(f"tag {raw.hex().upper()}: first byte does not announce more tag bytes", 0)
    if multi:
        if len(raw) < 2 or len(raw) > MAX_TAG_BYTES:
            raise TLVError(f"tag {raw.hex().upper()}: bad length", 0)
        for i, b in enumerate(raw[1:], start=1):
            last = i == len(raw) - 1
            if bool(b & 0x80) == last:
                raise TLVError(f"tag {raw.hex().upper()}: bad continuation bit in byte {i}", 0)


def is_constructed(tag: int) -> bool:
    return bool(tag_bytes(tag)[0] & 0x20)


def tag_name(tag: int) -> str:
    return tag_bytes(tag).hex().upper()


@dataclass(frozen=True, slots=True)
class TLV:
    """One data object: primitive (``value``) or constructed (``children``)."""

    tag: int
    value: bytes = b""
    children: tuple[TLV, ...] = ()

    @property
    def constructed(self) -> bool:
        return is_constructed(self.tag)

    def __repr__(self) -> str:
        # Values may hold card data: show tags and lengths only.
        if self.constructed:
            return f"TLV({tag_name(self.tag)}, {len(self.children)} children)"
        return f"TLV({tag_name(self.tag)}, {len(self.value)} bytes)"


def _read_tag(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= end:
                raise TLVError(f"tag starting {first:02X} is truncated", start)
            b = data[pos]
            pos += 1
            if pos - start > MAX_TAG_BYTES:
                raise TLVError(f"tag longer than {MAX_TAG_BYTES} bytes", start)
            if not b & 0x80:
                break
    return int.from_bytes(data[start:pos], "big"), pos


def _read_length(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    if pos >= end:
        raise TLVError(f"length of tag {tag_name(tag)} is missing", pos)
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if n == 0:
        raise TLVError(f"indefinite length (80) of tag {tag_name(tag)} is not allowed", pos)
    if n > MAX_LENGTH_BYTES:
        raise TLVError(f"length of tag {tag_name(tag)} uses {n} bytes (max {MAX_LENGTH_BYTES})", pos)
    if pos + 1 + n > end:
        raise TLVError(f"length of tag {tag_name(tag)} is truncated", pos)
    return int.from_bytes(data[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _decode(data: bytes, pos: int, end: int, depth: int) -> list[TLV]:
    if depth > MAX_DEPTH:
        raise TLVError(f"templates nested deeper than {MAX_DEPTH}", pos)
    items: list[TLV] = []
    while pos < end:
        if data[pos] == 0x00:  # padding between objects
            pos += 1
            continue
        tag_at = pos
        tag, pos = _read_tag(data, pos, end)
        length_at = pos
        length, pos = _read_length(data, pos, end, tag)
        if length > end - pos:
            raise TLVError(
                f"value of tag {tag_name(tag)} runs past the end (needs {length} bytes, {end - pos} left)",
                length_at,
            )
        if data[tag_at] & 0x20:
            items.append(TLV(tag, children=tuple(_decode(data, pos, pos + length, depth + 1))))
        else:
            items.append(TLV(tag, value=bytes(data[pos : pos + length])))
        pos += length
    return items


def decode(data: bytes | bytearray | memoryview) -> list[TLV]:
    """Every data object of ``data``, recursively; :class:`TLVError` if anything is malformed."""
    buf = bytes(data)
    return _decode(buf, 0, len(buf), 0)


def encode_length(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(raw) > MAX_LENGTH_BYTES:
        raise ValueError(f"length {n} is too large")
    return bytes([0x80 | len(raw)]) + raw


def encode(items: TLV | Iterable[TLV]) -> bytes:
    """Canonical encoding (shortest lengths): ``decode(encode(x)) == x``."""
    if isinstance(items, TLV):
        items = [items]
    out = bytearray()
    for item in items:
        raw_tag = tag_bytes(item.tag)
        if raw_tag[0] & 0x20:
            if item.value:
                raise ValueError(f"constructed tag {tag_name(item.tag)} takes children, not a value")
            body = encode(item.children)
        else:
            if item.children:
                raise ValueError(f"primitive tag {tag_name(item.tag)} cannot have children")
            body = item.value
        out += raw_tag + encode_length(len(body)) + body
    return bytes(out)


def tlv(tag: int, value: bytes | TLV | Iterable[TLV] = b"") -> TLV:
    """Build an object: ``tlv(0x70, [tlv(0x5A, pan_bcd)])``; a constructed tag takes children."""
    if is_constructed(tag):
        if isinstance(value, bytes | bytearray):
            return TLV(tag, children=tuple(decode(value)))
        if isinstance(value, TLV):
            return TLV(tag, children=(value,))
        return TLV(tag, children=tuple(value))
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"primitive tag {tag_name(tag)} takes bytes")
    return TLV(tag, value=bytes(value))


def walk(items: Iterable[TLV]) -> Iterator[TLV]:
    """Every object, depth first, templates before their children."""
    for item in items:
        yield item
        if item.children:
            yield from walk(item.children)


def find(items: Iterable[TLV], tag: int) -> TLV | None:
    """The first object with ``tag`` anywhere in the tree."""
    for item in walk(items):
        if item.tag == tag:
            return item
    return None


def find_value(items: Iterable[TLV], tag: int) -> bytes | None:
    item = find(items, tag)
    return None if item is None or item.constructed else item.value

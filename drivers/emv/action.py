"""Terminal action analysis (EMV Book 3 10.7): the TVR against the terminal's and the card's action codes.

The terminal action codes (TAC) come from the scheme's config rule; the issuer action codes (IAC, 9F0D/9F0E/9F0F)
from the card. A missing IAC-denial counts as all zeros, a missing IAC-online or IAC-default as all ones.

>>> tvr = bytes.fromhex("0000008000")                      # over the floor limit
>>> codes = ActionCodes.of(tac_default="DC4000A800", tac_denial="0010000000", tac_online="DC4004F800")
>>> first_ac(tvr, codes, {}, online_capable=True)
'ARQC'
>>> first_ac(tvr, codes, {}, online_capable=False)
'AAC'
>>> first_ac(bytes(5), codes, {0x9F0D: bytes(5), 0x9F0F: bytes(5)}, online_capable=True)
'TC'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Cryptogram = Literal["AAC", "TC", "ARQC"]
ONES = b"\xff" * 5
ZEROS = bytes(5)


@dataclass(frozen=True)
class ActionCodes:
    default: bytes
    denial: bytes
    online: bytes

    @classmethod
    def of(cls, *, tac_default: str, tac_denial: str, tac_online: str) -> ActionCodes:
        return cls(bytes.fromhex(tac_default), bytes.fromhex(tac_denial), bytes.fromhex(tac_online))


def _hits(tvr: bytes, tac: bytes, iac: bytes) -> bool:
    return any(t & (a | b) for t, a, b in zip(tvr, tac, iac, strict=True))


def _iac(card: Mapping[int, bytes], tag: int, missing: bytes) -> bytes:
    v = card.get(tag)
    return v if v is not None and len(v) == 5 else missing


def denial(tvr: bytes, tac: ActionCodes, card: Mapping[int, bytes]) -> bool:
    return _hits(tvr, tac.denial, _iac(card, 0x9F0E, ZEROS))


def online(tvr: bytes, tac: ActionCodes, card: Mapping[int, bytes]) -> bool:
    return _hits(tvr, tac.online, _iac(card, 0x9F0F, ONES))


def default(tvr: bytes, tac: ActionCodes, card: Mapping[int, bytes]) -> bool:
    """True: decline when the terminal cannot go online (Book 3 10.7 'default' codes)."""
    return _hits(tvr, tac.default, _iac(card, 0x9F0D, ONES))


def first_ac(tvr: bytes, tac: ActionCodes, card: Mapping[int, bytes], *, online_capable: bool) -> Cryptogram:
    """What the terminal asks for at the first GENERATE AC."""
    if denial(tvr, tac, card):
        return "AAC"
    if online_capable:
        return "ARQC" if online(tvr, tac, card) else "TC"
    return "AAC" if default(tvr, tac, card) else "TC"


def unable_to_go_online(tvr: bytes, tac: ActionCodes, card: Mapping[int, bytes]) -> Cryptogram:
    """After an ARQC that could not be sent: the default codes decide the second GENERATE AC (Book 3 10.7)."""
    return "AAC" if default(tvr, tac, card) else "TC"

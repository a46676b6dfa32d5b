"""The `[emv]` section: the terminal's EMV parameters and the CA public keys for offline data authentication.

    [emv]
    terminal_type = "22"            # 9F35: attended, online with offline capability
    capabilities = "E0A8C8"         # 9F33: IC + plaintext offline PIN, signature, no CVM; SDA, DDA, CDA
    pin_pad = "auto"                # the reader's PIN pad (PC/SC part 10): auto = use it when the reader has one
    [[emv.ca_keys]]                 # from the scheme (production) or test-keys.md (sandbox): none is built in
    rid = "A000000003"
    index = "F1"
    modulus = "C6DC..."
    exponent = "03"

No CA key is built in: with none for a card's RID, offline data authentication is "not performed" (a TVR
bit), never skipped silently. The sandbox's test CA goes in with ``sandbox.cards.profiles.sandbox_emv_config()``.

>>> EmvConfig().capabilities, EmvConfig().pin_pad
('E0A8C8', 'auto')
>>> EmvConfig(ca_keys=[{"rid": "a000000003", "index": "f1", "modulus": "C6" * 8, "exponent": "03"}]).ca_keys[0].rid
'A000000003'
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, StrictInt, field_validator

from config.section import Section


def hex_field(v: str, what: str, sizes: tuple[int, ...]) -> str:
    """Upper-case hex of one of the byte ``sizes``; the message names the size expected."""
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", v) or len(v) // 2 not in sizes:
        want = " or ".join(str(s) for s in sizes)
        raise ValueError(f"{what} must be {want} bytes of hex")
    return v.upper()


class CaKey(Section):
    """One certification authority public key (EMV Book 2 6.2), trusted for cards of ``rid``."""

    rid: str
    index: str
    modulus: str
    exponent: str = "03"

    @field_validator("rid")
    @classmethod
    def _rid(cls, v: str) -> str:
        return hex_field(v, "rid", (5,))

    @field_validator("index")
    @classmethod
    def _index(cls, v: str) -> str:
        return hex_field(v, "index", (1,))

    @field_validator("modulus")
    @classmethod
    def _modulus(cls, v: str) -> str:
        return hex_field(v, "modulus", tuple(range(8, 249)))

    @field_validator("exponent")
    @classmethod
    def _exponent(cls, v: str) -> str:
        v = hex_field(v, "exponent", (1, 3))
        if v not in ("03", "010001"):
            raise ValueError('exponent must be "03" or "010001" (EMV Book 2)')
        return v


class EmvConfig(Section):
    ca_keys: list[CaKey] = []
    terminal_type: str = "22"  # 9F35
    capabilities: str = "E0A8C8"  # 9F33
    additional_capabilities: str = "6000F0A001"  # 9F40
    country: str = ""  # 9F1A, ISO 3166 numeric; empty: from terminal.currency (DZD 012, TND 788)
    # Terminal risk management (Book 3 10.6); the floor limit is the scheme rule's (cards.schemes[].floor_limit).
    random_selection_percent: int = Field(0, ge=0, le=99)
    random_selection_max_percent: int = Field(0, ge=0, le=99)
    random_selection_threshold: StrictInt = Field(0, ge=0)
    pin_pad: Literal["auto", "on", "off"] = "auto"
    pin_timeout: int = Field(30, ge=5, le=120)  # seconds the reader's PIN pad waits for the customer

    @field_validator("terminal_type")
    @classmethod
    def _ttype(cls, v: str) -> str:
        if not re.fullmatch(r"[12][1-6]", v):
            raise ValueError('terminal_type must be two digits like "22" (EMV Book 4 annex A1)')
        return v

    @field_validator("capabilities")
    @classmethod
    def _caps(cls, v: str) -> str:
        return hex_field(v, "capabilities", (3,))

    @field_validator("additional_capabilities")
    @classmethod
    def _addcaps(cls, v: str) -> str:
        return hex_field(v, "additional_capabilities", (5,))

    @field_validator("country")
    @classmethod
    def _country(cls, v: str) -> str:
        if v and not re.fullmatch(r"\d{3}", v):
            raise ValueError('country must be an ISO 3166 numeric code like "012"')
        return v

    def ca_key(self, rid: str, index: int) -> CaKey | None:
        """The configured key for ``rid`` (hex) and ``index``, or None."""
        for k in self.ca_keys:
            if k.rid == rid.upper() and int(k.index, 16) == index:
                return k
        return None

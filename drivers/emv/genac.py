"""GENERATE AC (first from CDOL1, second from CDOL2), EXTERNAL AUTHENTICATE and issuer scripts (71/72):
EMV Book 3 6.5.5, 6.5.4, 10.9, 10.10.

    first = generate_ac(reader, "ARQC", cdol1_data, cda=False)       # GenAc(cid, kind, atc, cryptogram, iad, ...)
    external_authenticate(reader, issuer_auth_data_91)               # True / False (6300: issuer auth failed)
    results = run_scripts(reader, issuer_answer_tlvs, template=0x71)  # per script: 9F18, result, commands
    second = generate_ac(reader, "TC", cdol2_data, cda=False)

>>> parse_answer(bytes.fromhex("8012" "80" "0001" "1122334455667788" "06011203A00000"), "ARQC").kind
'ARQC'
>>> parse_answer(bytes.fromhex("8012" "80" "0001" "1122334455667788" "06011203A00000"), "TC").kind  # go online
'ARQC'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from drivers.emv import tlv as T

P1 = {"AAC": 0x00, "TC": 0x40, "ARQC": 0x80}
CDA_REQUEST = 0x10
# Book 3 6.5.5.4 (table 13): what a card may answer to each request. To a TC request its own risk management
# may send the transaction online (ARQC); to an ARQC request it never approves offline (TC).
ALLOWED = {"AAC": frozenset({"AAC"}), "TC": frozenset({"AAC", "TC", "ARQC"}), "ARQC": frozenset({"AAC", "ARQC"})}
MAX_SCRIPT_COMMANDS = 16
MAX_SCRIPTS = 8


class GenAcError(Exception):
    """The card's GENERATE AC answer is malformed or not allowed (one line naming the byte or tag)."""


class Commander(Protocol):
    def command(self, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = 0
                ) -> tuple[bytes, int]: ...


def kind_of(cid: int) -> str:
    """Cryptogram information data (9F27) b8-b7: 00 AAC, 01 TC, 10 ARQC, 11 reserved."""
    return {0x00: "AAC", 0x40: "TC", 0x80: "ARQC"}.get(cid & 0xC0, "RFU")


@dataclass
class GenAc:
    cid: int
    kind: str  # AAC | TC | ARQC
    atc: bytes
    cryptogram: bytes
    iad: bytes
    sdad: bytes | None = None  # 9F4B (CDA)
    tags: dict[int, bytes] = field(default_factory=dict)  # every primitive of the answer
    signed_tlvs: bytes = b""  # the answer's TLVs other than 9F4B, in order (the CDA hash input)

    def summary(self) -> dict[str, str]:
        return {"cryptogram_type": self.kind, "cid": f"{self.cid:02X}", "atc": self.atc.hex().upper()}


def parse_answer(data: bytes, asked: str) -> GenAc:
    try:
        items = T.decode(data)
    except T.TLVError as e:
        raise GenAcError(f"GENERATE AC: {e}") from None
    if len(items) != 1:
        raise GenAcError("GENERATE AC: expected one template")
    top = items[0]
    if top.tag == 0x80:
        v = top.value
        if len(v) < 11:
            raise GenAcError(f"GENERATE AC format 1: {len(v)} bytes, at least 11 needed")
        cid, atc, ac, iad = v[0], v[1:3], v[3:11], v[11:]
        tags = {0x9F27: bytes([cid]), 0x9F36: atc, 0x9F26: ac, 0x9F10: iad}
        sdad = None
        signed = b""
    elif top.tag == 0x77:
        tags = {c.tag: c.value for c in top.children if not c.constructed}
        for tag, size in ((0x9F27, 1), (0x9F36, 2)):
            if len(tags.get(tag, b"")) != size:
                raise GenAcError(f"GENERATE AC format 2: {T.tag_name(tag)} missing or not {size} byte(s)")
        sdad = tags.get(0x9F4B)
        if 0x9F26 not in tags and sdad is None:
            raise GenAcError("GENERATE AC format 2: no cryptogram (9F26) and no CDA signature (9F4B)")
        if 0x9F26 in tags and len(tags[0x9F26]) != 8:
            raise GenAcError("GENERATE AC format 2: 9F26 is not 8 bytes")
        cid, atc, ac, iad = tags[0x9F27][0], tags[0x9F36], tags.get(0x9F26, b""), tags.get(0x9F10, b"")
        signed = b"".join(T.encode(c) for c in top.children if c.tag != 0x9F4B)
    else:
        raise GenAcError(f"GENERATE AC: unexpected template {T.tag_name(top.tag)}")
    if len(iad) > 32:
        raise GenAcError(f"GENERATE AC: issuer application data (9F10) of {len(iad)} bytes, at most 32")
    kind = kind_of(cid)
    if kind == "RFU":
        raise GenAcError(f"GENERATE AC: cryptogram information data {cid:02X} is reserved")
    if kind != "AAC" and not iad:  # every cryptogram version MACs the IAD: the issuer cannot verify without it
        raise GenAcError(f"GENERATE AC: a {kind} without issuer application data (9F10)")
    if kind not in ALLOWED[asked]:
        raise GenAcError(f"GENERATE AC: asked for {asked}, the card answered {kind}")
    return GenAc(cid, kind, atc, ac, iad, sdad, tags, signed)


def generate_ac(reader: Commander, asked: str, cdol_data: bytes, *, cda: bool = False) -> GenAc:
    """One GENERATE AC; a status other than 9000 is a :class:`GenAcError` carrying it (6985: the card refuses)."""
    p1 = P1[asked] | (CDA_REQUEST if cda else 0)
    data, sw = reader.command(0x80, 0xAE, p1, 0x00, cdol_data)
    if sw != 0x9000:
        raise GenAcError(f"GENERATE AC ({asked}): the card answered {sw:04X}")
    return parse_answer(data, asked)


def external_authenticate(reader: Commander, issuer_auth_data: bytes) -> bool:
    """Book 3 6.5.4: 9000 = issuer authenticated; 6300 = failed; anything else also counts as failed."""
    if not 8 <= len(issuer_auth_data) <= 16:
        return False
    _data, sw = reader.command(0x00, 0x82, 0x00, 0x00, issuer_auth_data, le=None)
    return sw == 0x9000


@dataclass
class ScriptResult:
    template: int  # 0x71 (before the second GENERATE AC) or 0x72 (after)
    script_id: bytes  # 9F18, or 4 zero bytes
    commands: int  # how many were sent
    ok: bool
    sw: int | None = None  # the status that stopped it

    def byte(self) -> bytes:
        """Issuer script results (9F5B): result nibble (1 failed, 2 ok) + sequence (of the failed command)."""
        if self.ok:
            first = 0x20
        else:
            first = 0x10 | min(self.commands, 0x0E)
        return bytes([first]) + self.script_id


def scripts_in(tlvs: list[T.TLV], template: int) -> list[T.TLV]:
    return [t for t in tlvs if t.tag == template][:MAX_SCRIPTS]


def run_scripts(reader: Commander, tlvs: list[T.TLV], template: int) -> list[ScriptResult]:
    """Book 3 10.10: each script's commands (86) in order; a script stops at the first command whose SW1 is
    not 90, 62 or 63. A script with more than MAX_SCRIPT_COMMANDS commands is refused unsent."""
    out: list[ScriptResult] = []
    for script in scripts_in(tlvs, template):
        sid = T.find_value(list(script.children), 0x9F18) or bytes(4)
        sid = sid[:4].rjust(4, b"\x00")
        cmds = [c.value for c in script.children if c.tag == 0x86]
        if len(cmds) > MAX_SCRIPT_COMMANDS or any(len(c) < 4 for c in cmds):
            out.append(ScriptResult(template, sid, 0, False))
            continue
        sent = 0
        result = ScriptResult(template, sid, 0, True)
        for apdu in cmds:
            sent += 1
            body = apdu[4:]
            data = body[1 : 1 + body[0]] if body else b""
            _resp, sw = reader.command(apdu[0], apdu[1], apdu[2], apdu[3], data, le=None)
            if sw >> 8 not in (0x90, 0x62, 0x63):
                result = ScriptResult(template, sid, sent, False, sw)
                break
        else:
            result = ScriptResult(template, sid, sent, True)
        out.append(result)
    return out

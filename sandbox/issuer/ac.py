"""Application cryptograms (ARQC, TC, AAC) and ARPCs per cryptogram version, through pyemv.ac and pyemv.kd.

Card and issuer share this module: the virtual card computes with it, the sandbox acquirer verifies with it.
The data are the tags' values in the CVN's fixed order (EMV Book 2 A1.2, as pyemv.cvn has them), never the raw
CDOL bytes:

=====  ===========================================  ==========  ========================  ======
CVN    data after 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37  session key  AC padding              ARPC
       82 9F36                                                                            method
=====  ===========================================  ==========  ========================  ======
10     CVR = 9F10[3:7] (Visa)                       none (MK)    Visa (00 pad)             1 (MK)
18     the whole 9F10 (Visa)                        EMV common   EMV (80 pad)              2
16     CVR = 9F10[2:8] (M/Chip)                     Mastercard   EMV                       1 (MK)
20     CVR = 9F10[2:8] (M/Chip)                     EMV common   EMV                       1 (SK)
=====  ===========================================  ==========  ========================  ======

test-keys.md's vector (Visa CVN 18):

>>> from sandbox.issuer.master import card_keys
>>> tags = {0x9F02: bytes.fromhex("000000004000"), 0x9F03: bytes(6), 0x9F1A: bytes.fromhex("0124"),
...         0x95: bytes.fromhex("8000048000"), 0x5F2A: bytes.fromhex("0124"), 0x9A: bytes.fromhex("191105"),
...         0x9C: b"\\x01", 0x9F37: bytes.fromhex("52BF4585"), 0x82: bytes.fromhex("1800"),
...         0x9F36: bytes.fromhex("001C"), 0x9F10: bytes.fromhex("06011203A0B800")}
>>> keys = card_keys("1234567890123456", 0)
>>> cvn = cvn_of(tags[0x9F10]); cvn
18
>>> ac = cryptogram(cvn, keys, tags); ac.hex().upper()
'7A788EA6B8A3E733'
>>> arpc(cvn, keys, tags, ac).hex().upper()
'9AF514C1'
>>> issuer_authentication_data(cvn, keys, tags, ac).hex().upper()   # tag 91: ARPC || CSU
'9AF514C100000000'
"""

from __future__ import annotations

from collections.abc import Mapping

from pyemv import ac as pac
from pyemv import kd
from pyemv import sm as psm

from sandbox.issuer.errors import IssuerError
from sandbox.issuer.master import CardKeys

CVNS = frozenset({10, 16, 18, 20})
VISA_CVNS = {0x0A: 10, 0x12: 18}
MASTERCARD_CVNS = {0x10: 16, 0x14: 20}

# (tag, exact length) in the order every supported CVN MACs them; 9F10 follows, per CVN.
COMMON_DATA: tuple[tuple[int, int], ...] = (
    (0x9F02, 6), (0x9F03, 6), (0x9F1A, 2), (0x95, 5), (0x5F2A, 2), (0x9A, 3), (0x9C, 1), (0x9F37, 4),
    (0x82, 2), (0x9F36, 2),
)
MAX_IAD = 32  # EMV Book 3: 9F10 is at most 32 bytes


def cvn_of(iad: bytes) -> int | None:
    """The cryptogram version named by the issuer application data (9F10), or None when it is not one we know.

    Visa formats 0/1/3 start with their length 06, then the derivation key index, then the CVN (0A, 12);
    M/Chip has the derivation key index then the CVN (10, 14) as its 2nd byte.

    >>> cvn_of(bytes.fromhex("06010A03A00000")), cvn_of(bytes.fromhex("0110A00003220000000000000000000000FF"))
    (10, 16)
    >>> cvn_of(bytes.fromhex("0114A00003220000")), cvn_of(b"\\x06\\x01"), cvn_of(b"")
    (20, None, None)
    """
    if len(iad) >= 7 and iad[0] == 0x06 and iad[2] in VISA_CVNS:
        return VISA_CVNS[iad[2]]
    if len(iad) >= 8 and iad[1] in MASTERCARD_CVNS:
        return MASTERCARD_CVNS[iad[1]]
    return None


def _tag(tags: Mapping[int, bytes], tag: int, length: int | None = None) -> bytes:
    value = tags.get(tag)
    if value is None:
        raise IssuerError(f"tag {tag:02X} is missing")
    if not isinstance(value, bytes | bytearray):
        raise IssuerError(f"tag {tag:02X}: not bytes")
    if length is not None and len(value) != length:
        raise IssuerError(f"tag {tag:02X}: {len(value)} bytes, expected {length}")
    return bytes(value)


def _check_cvn(cvn: int) -> None:
    if cvn not in CVNS:
        raise IssuerError(f"cryptogram version {cvn!r} is not supported (10, 16, 18, 20)")


def _iad(tags: Mapping[int, bytes]) -> bytes:
    iad = _tag(tags, 0x9F10)
    if not 1 <= len(iad) <= MAX_IAD:
        raise IssuerError(f"tag 9F10: {len(iad)} bytes, expected 1 to {MAX_IAD}")
    return iad


def _cvn_data(cvn: int, iad: bytes) -> bytes:
    """What follows the common tags in the MAC input: the CVR out of the IAD, or the whole IAD (CVN 18)."""
    if cvn == 18:
        return iad
    start, end = (3, 7) if cvn == 10 else (2, 8)
    if len(iad) < end:
        raise IssuerError(f"tag 9F10: {len(iad)} bytes, too short for CVN {cvn} (needs {end})")
    return iad[start:end]


def session_key(cvn: int, keys: CardKeys, tags: Mapping[int, bytes]) -> bytes:
    """The AC session key of the CVN: the ICC master key itself (10, 16's ARPC), EMV common session key on the
    ATC (18, 20), Mastercard's on ATC || 0000 || UN (16)."""
    _check_cvn(cvn)
    if cvn == 10:
        return keys.ac
    atc = _tag(tags, 0x9F36, 2)
    if cvn == 16:
        return kd.derive_common_sk(keys.ac, atc + b"\x00\x00" + _tag(tags, 0x9F37, 4))
    return kd.derive_common_sk(keys.ac, atc + bytes(6))


def cryptogram(cvn: int, keys: CardKeys, tags: Mapping[int, bytes]) -> bytes:
    """The 8-byte application cryptogram (ARQC, TC and AAC are the same computation) of `tags` under `keys`.

    `tags` maps int tags to values; it needs 9F02 9F03 9F1A 95 5F2A 9A 9C 9F37 82 9F36 9F10 (others are ignored).
    A missing or mis-sized tag raises IssuerError naming it.
    """
    _check_cvn(cvn)
    data = b"".join(_tag(tags, tag, length) for tag, length in COMMON_DATA) + _cvn_data(cvn, _iad(tags))
    padding = pac.PaddingType.VISA if cvn == 10 else pac.PaddingType.EMV
    return pac.generate_ac(session_key(cvn, keys, tags), data, padding, 8)


def arpc_method(cvn: int) -> int:
    """1 (8-byte ARPC over ARQC xor ARC) or 2 (4-byte ARPC over ARQC || CSU): EMV Book 2 8.2.

    >>> [arpc_method(c) for c in (10, 16, 18, 20)]
    [1, 1, 2, 1]
    """
    _check_cvn(cvn)
    return 2 if cvn == 18 else 1


def arpc(cvn: int, keys: CardKeys, tags: Mapping[int, bytes], arqc: bytes, arc: bytes = b"00",
         csu: bytes = b"\x00\x00\x00\x00") -> bytes:
    """The ARPC answering `arqc`: method 1 (8 bytes, over the 2-byte ARC, e.g. b"00" for approved) for CVN 10,
    16, 20; method 2 (4 bytes, over the 4-byte card status update) for CVN 18. `tags` gives 9F36 (and 9F37)."""
    if len(arqc) != 8:
        raise IssuerError(f"tag 9F26: {len(arqc)} bytes, expected 8")
    if arpc_method(cvn) == 2:
        if len(csu) != 4:
            raise IssuerError(f"CSU: {len(csu)} bytes, expected 4")
        return pac.generate_arpc_2(session_key(cvn, keys, tags), arqc, csu)
    if len(arc) != 2:
        raise IssuerError(f"tag 8A: {len(arc)} bytes, expected 2")
    key = session_key(cvn, keys, tags) if cvn == 20 else keys.ac  # CVN 10 and 16: the ICC MK, no session key
    return pac.generate_arpc_1(key, arqc, arc)


def issuer_authentication_data(cvn: int, keys: CardKeys, tags: Mapping[int, bytes], arqc: bytes,
                               arc: bytes = b"00", csu: bytes = b"\x00\x00\x00\x00") -> bytes:
    """The value of tag 91 the issuer returns: ARPC || ARC (method 1, 10 bytes) or ARPC || CSU (method 2, 8)."""
    tail = csu if arpc_method(cvn) == 2 else arc
    return arpc(cvn, keys, tags, arqc, arc, csu) + tail


def script_mac(cvn: int, keys: CardKeys, atc: bytes, arqc: bytes, command_header: bytes,
               command_data: bytes = b"") -> bytes:
    """The 8-byte MAC of an issuer script command (secure messaging for integrity, EMV Book 2 9.2, pyemv.sm).

    `command_header` is CLA INS P1 P2 Lc, Lc counting the data and this MAC; the MAC covers header || ATC ||
    ARQC || data under the SMI session key: Visa's (CVN 10, 18: ATC-based) or EMV common on the ARQC (16, 20).
    The card recomputes it from the same inputs to accept the command.
    """
    _check_cvn(cvn)
    if len(atc) != 2 or len(arqc) != 8 or len(command_header) != 5:
        raise IssuerError("script MAC: ATC is 2 bytes, ARQC 8, command header 5")
    key = kd.derive_visa_sm_sk(keys.smi, atc) if cvn in (10, 18) else kd.derive_common_sk(keys.smi, arqc)
    return psm.generate_command_mac(key, command_header + atc + arqc + command_data, 8)


def script_command(cvn: int, keys: CardKeys, atc: bytes, arqc: bytes, cla_ins_p1_p2: bytes,
                   data: bytes = b"") -> bytes:
    """A whole issuer script command APDU (the value of one tag 86): CLA INS P1 P2 Lc data MAC(8).

    >>> from sandbox.issuer.master import card_keys
    >>> apdu = script_command(18, card_keys("1234567890123456"), b"\\x00\\x1c", bytes(8), bytes.fromhex("84180000"))
    >>> apdu[:5].hex().upper(), len(apdu)    # APPLICATION UNBLOCK: no data, Lc = the 8-byte MAC
    ('8418000008', 13)
    """
    if len(cla_ins_p1_p2) != 4 or len(data) > 239:
        raise IssuerError("script command: 4 header bytes and at most 239 data bytes")
    header = cla_ins_p1_p2 + bytes([len(data) + 8])
    return header + data + script_mac(cvn, keys, atc, arqc, header, data)

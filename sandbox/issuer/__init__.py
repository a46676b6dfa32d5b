"""The sandbox issuer: the card-side and issuer-side EMV cryptography of the test cards (TEST KEYS ONLY).

Virtual cards (sandbox/cards) compute their cryptograms and ODA signatures with it; the sandbox acquirer
(sandbox/billing/acquirer.py) verifies ARQCs and TCs and computes ARPCs with it. Keys: test-keys.md.

>>> keys = card_keys("1234567890123456", 0)
>>> tags = {0x9F02: bytes.fromhex("000000004000"), 0x9F03: bytes(6), 0x9F1A: b"\\x01\\x24", 0x95: bytes(5),
...         0x5F2A: b"\\x01\\x24", 0x9A: bytes.fromhex("261130"), 0x9C: b"\\x00", 0x9F37: b"\\x52\\xbf\\x45\\x85",
...         0x82: b"\\x18\\x00", 0x9F36: b"\\x00\\x01", 0x9F10: bytes.fromhex("06010A03A00000")}
>>> arqc = cryptogram(cvn_of(tags[0x9F10]) or 0, keys, tags)     # the card
>>> arqc == cryptogram(10, card_keys("1234567890123456"), tags)   # the issuer, from the same tags
True
>>> len(arpc(10, keys, tags, arqc, b"00"))                        # method 1
8
"""

from sandbox.issuer.ac import (
    arpc,
    arpc_method,
    cryptogram,
    cvn_of,
    issuer_authentication_data,
    script_command,
    script_mac,
    session_key,
)
from sandbox.issuer.errors import IssuerError
from sandbox.issuer.master import (
    CA_EXPONENT,
    CA_INDEX,
    CA_MODULUS,
    IMK_AC,
    IMK_SMC,
    IMK_SMI,
    CardKeys,
    card_keys,
)
from sandbox.issuer.oda import (
    IccCertificates,
    card_authentication_data,
    certificates,
    sign_cda,
    sign_dynamic,
    sign_fdda,
)

__all__ = [
    "CA_EXPONENT", "CA_INDEX", "CA_MODULUS", "IMK_AC", "IMK_SMC", "IMK_SMI", "CardKeys", "IccCertificates",
    "IssuerError", "arpc", "arpc_method", "card_authentication_data", "card_keys", "certificates", "cryptogram",
    "cvn_of", "issuer_authentication_data", "script_command", "script_mac", "session_key", "sign_cda",
    "sign_dynamic", "sign_fdda",
]

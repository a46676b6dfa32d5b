"""The sandbox issuer's master keys (test-keys.md) and the per-card key derivation (EMV Book 2 annex A1.4).

TEST ONLY: these keys are public (pyemv's test vectors); no production key may ever be put here.

>>> k = card_keys("1234567890123456", 0)
>>> from pyemv.tools import key_check_digits
>>> key_check_digits(k.ac, 2).hex().upper()   # test-keys.md: ICC MK check value
'BAB0'
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from cryptography.utils import CryptographyDeprecationWarning

from sandbox.issuer.errors import IssuerError

# pyemv still calls 2-key TripleDES through the old cryptography path: that is its business, not a fault of ours.
warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"pyemv(\.|$)")

from pyemv import kd  # noqa: E402  (after the filter, so importing pyemv is quiet too)

IMK_AC = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
IMK_SMI = bytes.fromhex("FEDCBA98765432100123456789ABCDEF")
IMK_SMC = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")

# The test certification authority (test-keys.md), trusted under index F1 for every test RID.
CA_INDEX = 0xF1
CA_EXPONENT = 3
CA_MODULUS = int(
    "C6DCB846B280C75A36ECF22D0FF160D92CA2AF4E7DC010ED4086CFA4205B6927E40E47C8F1D1D9978A537A3A901A4B8A"
    "BB5E100C1C2EEE86A128DE8D60D4FBDD441A860DADE1C95300759A86742B6C75A3F2C3A839F570717DD31C5C166EAA15"
    "7DAC71A0CE6FAABDE75815A06D7E5080CDFF3EC5B9A3FD110ABC15B543B045C1CFDD300BDE454EA8CB063DF1498227BB",
    16,
)
# Only to make test certificates; a real CA's private key never leaves its HSM.
CA_PRIVATE_EXPONENT = int(
    "84932584770084E6CF48A1735FF64090C86C74DEFE800B48D5AF35181592461A98098530A136910FB18CFC270ABC325C"
    "7CE9600812C9F459C0C5E9B395E3529382BC595E73EBDB8B7C73F9359F18DB948E743905B5D37BD4581A42569C1EF92D"
    "C02C6EE741942304A82FEBCCD8D2A8A5A869B3D187C1565EFD34C955F7E7148BC6023834173BF35D9CB0D99B2A929E9B",
    16,
)


@dataclass(frozen=True)
class CardKeys:
    """A card's ICC master keys (16 bytes each): application cryptogram, script integrity, confidentiality."""

    ac: bytes
    smi: bytes
    smc: bytes

    def __repr__(self) -> str:  # keys stay out of logs and tracebacks
        return "CardKeys(...)"


def check_pan(pan: str) -> str:
    """The PAN if it is 12..19 decimal digits, else IssuerError (never echoing the number)."""
    if not (isinstance(pan, str) and pan.isascii() and pan.isdigit() and 12 <= len(pan) <= 19):
        raise IssuerError("PAN: not 12 to 19 digits")
    return pan


def card_keys(pan: str, psn: int = 0) -> CardKeys:
    """The ICC master keys of the card `pan` / PAN sequence number `psn` (5F34) under the test IMKs:
    EMV option A, option B for PANs over 16 digits (pyemv.kd.derive_icc_mk_b does both).

    >>> card_keys("1234567890123456").ac == card_keys("1234567890123456", 0).ac
    True
    >>> card_keys("12345", 0)
    Traceback (most recent call last):
    ...
    sandbox.issuer.errors.IssuerError: PAN: not 12 to 19 digits
    """
    check_pan(pan)
    if not (isinstance(psn, int) and 0 <= psn <= 99):
        raise IssuerError(f"PAN sequence number {psn!r}: not 0 to 99")
    seq = f"{psn:02d}"
    return CardKeys(
        ac=kd.derive_icc_mk_b(IMK_AC, pan, seq),
        smi=kd.derive_icc_mk_b(IMK_SMI, pan, seq),
        smc=kd.derive_icc_mk_b(IMK_SMC, pan, seq),
    )

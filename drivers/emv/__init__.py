"""EMV over PC/SC: BER-TLV codec, tag dictionary, DOLs, the reading sequence and scheme rules.

    from drivers.emv import EmvReader, CardData, TLVError
"""

from drivers.emv.card import CardData, PanWiped, SecretPan
from drivers.emv.reader import (
    CardDataError,
    CardStatusError,
    EmvError,
    EmvReader,
    MissingData,
    NoApplication,
    Terminal,
)
from drivers.emv.tlv import TLV, TLVError

__all__ = [
    "TLV",
    "CardData",
    "CardDataError",
    "CardStatusError",
    "EmvError",
    "EmvReader",
    "MissingData",
    "NoApplication",
    "PanWiped",
    "SecretPan",
    "TLVError",
    "Terminal",
]

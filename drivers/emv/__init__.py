"""EMV over PC/SC: BER-TLV codec, tag dictionary, DOLs, the reading sequence and scheme rules.

    from drivers.emv import EmvReader, CardData, TLVError
"""

from drivers.emv.card import CardData, PanWiped, SecretPan
from drivers.emv.reader import (
    CardDataError,
    CardLimitError,
    CardStatusError,
    EmvError,
    EmvReader,
    MissingData,
    NoApplication,
    ReadCancelled,
    ReadTimeout,
    Terminal,
)
from drivers.emv.tlv import TLV, TLVError

__all__ = [
    "TLV",
    "CardData",
    "CardDataError",
    "CardLimitError",
    "CardStatusError",
    "EmvError",
    "EmvReader",
    "MissingData",
    "NoApplication",
    "PanWiped",
    "ReadCancelled",
    "ReadTimeout",
    "SecretPan",
    "TLVError",
    "Terminal",
]

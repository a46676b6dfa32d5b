"""EMV over PC/SC: BER-TLV codec, tag dictionary, DOLs, the reading sequence and scheme rules, and the terminal
kernel of EMV Book 3 (docs/emv.md), one small module per step:

    reader.py (selection, GPO, records) -> oda.py (SDA/DDA/CDA) -> restrictions.py -> cvm.py (+ pinpad.py)
    -> risk.py -> action.py -> genac.py (GENERATE AC, EXTERNAL AUTHENTICATE, scripts); tvr.py holds the bits;
    kernel.py drives a transaction; checks.py answers `guichet doctor`.

    from drivers.emv import EmvReader, CardData, TLVError
    from drivers.emv.kernel import Kernel, KernelParams, IssuerAnswer
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

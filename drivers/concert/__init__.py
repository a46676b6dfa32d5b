"""Concert E+: the cash register <-> payment terminal (TPE) protocol over a serial line.

    from drivers.concert import ConcertLink, Approved
    result = ConcertLink("/dev/ttyACM0", framing="8N1").pay(123450, "DZD")

``framing`` holds the codecs (shared with the TPE simulator), ``link`` the exchange and its typed results.
"""

from drivers.concert.framing import AmountError, ConcertError, FrameError, LrcError, Request, Response
from drivers.concert.link import (
    Approved,
    Cancelled,
    ConcertLink,
    LinkError,
    Ready,
    Refused,
    Result,
    Timeout,
)

__all__ = [
    "AmountError",
    "Approved",
    "Cancelled",
    "ConcertError",
    "ConcertLink",
    "FrameError",
    "LinkError",
    "LrcError",
    "Ready",
    "Refused",
    "Request",
    "Response",
    "Result",
    "Timeout",
]

"""Concert: the cash register <-> payment terminal (TPE) protocol. E+ over a serial line, V3 (Caisse-AP) over TCP.

    from drivers.concert import link_for, Approved
    link = link_for("/dev/ttyACM0", framing="8N1")         # E+ (ConcertLink): a path or a pyserial URL
    link = link_for("tcp://127.0.0.1:8888")                # V3 (V3Link): tcp:// or caisse-ap:// selects it
    link = link_from_config(cfg.tpe)                       # the same choice from [tpe] port/protocol
    result = link.pay(123450, "DZD")

Like pyserial's URL handlers, the port value chooses the transport: ``tcp://`` and ``caisse-ap://`` mean
Concert V3 over TCP; a device path or ``socket://``/``loop://``/``spy://`` means E+ through pyserial.
Modules by protocol: ``eplus_codec``/``v3_codec`` hold the messages (shared with the TPE simulators),
``eplus_link``/``v3_link`` the exchanges; ``base`` what both links share (``TerminalLink``, the typed results),
``fields`` what both codecs share (errors, amount and currency checks). Import from ``drivers.concert``.
"""

from __future__ import annotations

from typing import Any

from drivers.concert.base import (
    Answer,
    Approved,
    Cancelled,
    LinkError,
    Ready,
    Refused,
    Result,
    TerminalLink,
    Timeout,
)
from drivers.concert.eplus_codec import FrameError, LrcError, Request, Response
from drivers.concert.eplus_link import ConcertLink
from drivers.concert.fields import AmountError, ConcertError
from drivers.concert.v3_codec import TlvError, V3Request, V3Response
from drivers.concert.v3_link import V3Link, is_tcp_url

Link = ConcertLink | V3Link


def protocol_for(port: str, protocol: str = "E+") -> str:
    """"V3" or "E+" for a port value: a ``tcp://``/``caisse-ap://`` URL implies V3; ``protocol="V3"`` takes a
    bare ``host[:port]``; V3 over a serial line is not implemented (ConcertError says so).

    >>> protocol_for("tcp://127.0.0.1:8888"), protocol_for("/dev/ttyUSB0"), protocol_for("10.0.0.5", "V3")
    ('V3', 'E+', 'V3')
    """
    if is_tcp_url(port):
        return "V3"
    if protocol == "V3":
        if port and ("://" in port or port.startswith("/")):
            raise ConcertError(
                f"tpe.port: {port!r}: Concert V3 is implemented over TCP only: give tcp://host:8888"
            )
        return "V3"
    return "E+"


def _transport(port: str, protocol: str) -> tuple[type[ConcertLink] | type[V3Link], str]:
    """The link class for a port value, and the port as that class takes it (a bare V3 host gets tcp://)."""
    if protocol_for(port, protocol) == "V3":
        return V3Link, port if is_tcp_url(port) or not port else f"tcp://{port}"
    return ConcertLink, port


def link_for(port: str, *, protocol: str = "E+", **kw: Any) -> Link:
    """The link for ``port``: V3Link or ConcertLink (keyword options of the other transport are ignored)."""
    cls, port = _transport(port, protocol)
    return cls(port, **{k: v for k, v in kw.items() if k not in cls.ignored_options})


def link_from_config(tpe: Any, **overrides: Any) -> Link:
    """From a ``config.schema.TpeConfig`` (port, protocol, timeouts...); keyword overrides (CLI options) win."""
    port = overrides.get("port") or tpe.port
    protocol = overrides.pop("protocol", None) or getattr(tpe, "protocol", "E+")
    cls, resolved = _transport(port, protocol)
    if resolved != port:
        overrides["port"] = resolved
    link: Link = cls.from_config(tpe, **overrides)
    return link


__all__ = [
    "AmountError",
    "Answer",
    "Approved",
    "Cancelled",
    "ConcertError",
    "ConcertLink",
    "FrameError",
    "Link",
    "LinkError",
    "LrcError",
    "Ready",
    "Refused",
    "Request",
    "Response",
    "Result",
    "TerminalLink",
    "Timeout",
    "TlvError",
    "V3Link",
    "V3Request",
    "V3Response",
    "link_for",
    "link_from_config",
    "protocol_for",
]

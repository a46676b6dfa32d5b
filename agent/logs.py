"""Logging for the agent: stderr for journald, syslog priorities, structured fields, card numbers scrubbed.

    setup_logging("INFO")                                   # once, at start (takes over the root logger)
    log = logging.getLogger("agent.sync")
    log.info("uploaded", extra={"payment_id": "0b7e...", "state": "uploaded"})
    # under systemd (JOURNAL_STREAM names our stderr):
    #   <6>agent.sync: uploaded payment_id=0b7e... state=uploaded
    # on a terminal:
    #   2026-11-22 09:14:03 INFO agent.sync: uploaded payment_id=0b7e... state=uploaded

    >>> from agent.logs import scrub_pans
    >>> scrub_pans("card 4111 1111 1111 1111 refused")
    'card 411111******1111 refused'

journald reads the ``<N>`` prefix of each line as the syslog priority (SyslogLevelPrefix=yes, the default)
and stamps the time itself, so under systemd we print no timestamp.

The scrubber (``drivers.pan.scrub_pans``, re-exported here; drivers scrub device fields with the same one)
masks any Luhn-valid run of 13 to 19 digits: plain (``4111111111111111``, also glued to other
digits) or written in groups separated by one space or one dash (``4111 1111 1111 1111``,
``3782-822463-10005``; groups of 3 to 6 digits, glued to other digits at either end or not).
Ordinary numbers keep their digits: amounts, 12-digit bill references, dates, lists of references.
Limits: a run of 13+ digits that is not a card number is masked one time in ten or so (the Luhn check
cannot tell); groups separated by anything other than one space or dash (dots, slashes,
two spaces) are not joined.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

from drivers.pan import find_pans, scrub_pans

__all__ = ["FIELDS", "PanScrubber", "find_pans", "scrub_pans", "setup_logging", "under_journald"]

# Structured fields, passed with `extra=`; printed as key=value after the message, in this order.
FIELDS = ("payment_id", "transaction_id", "bill_reference", "state", "receipt_number")

# Python level -> syslog priority (sd-daemon(3) prefixes).
PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

class PanScrubber(logging.Filter):
    """A logging.Filter that masks card numbers in the message, its arguments, the traceback and the fields.

    Put it on the handler (filters on a logger do not see records of its child loggers):
    ``handler.addFilter(PanScrubber())``. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = scrub_pans(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_pans(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_pans(record.stack_info)
        for name in FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, scrub_pans(value))
        return True


def under_journald(stream: IO[Any] | None = None) -> bool:
    """True when `stream` (stderr) is connected to the journal: JOURNAL_STREAM names its device and inode."""
    value = os.environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        # Unparseable or no real fd: trust the variable (systemd set it; a wrapper may have dup'ed stderr).
        return True
    return (st.st_dev, st.st_ino) == (dev, ino)


def _fields(record: logging.LogRecord) -> str:
    parts = [f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None) is not None]
    return (" " + " ".join(parts)) if parts else ""


class JournalFormatter(logging.Formatter):
    """``<6>agent.sync: message key=value``; every line of a traceback carries the priority too."""

    def format(self, record: logging.LogRecord) -> str:
        prio = PRIORITIES.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = f"{record.name}: {record.getMessage()}{_fields(record)}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + record.stack_info
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


class ConsoleFormatter(logging.Formatter):
    """``2026-11-22 09:14:03 INFO agent.sync: message key=value`` for a terminal or a file."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return super().formatMessage(record) + _fields(record)


_HANDLER_FLAG = "_guichet_handler"


def setup_logging(
    level: int | str = "INFO", *, stream: IO[str] | None = None, journald: bool | None = None
) -> logging.Handler:
    """Send the root logger to stderr (or `stream`) with the right format and the PAN scrubber.

    Calling it again replaces the handler it installed before (tests, `guichet run` after a CLI parse).
    """
    stream = sys.stderr if stream is None else stream
    if journald is None:
        journald = under_journald(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if journald else ConsoleFormatter())
    handler.addFilter(PanScrubber())
    setattr(handler, _HANDLER_FLAG, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_FLAG, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler

"""The one home of the agent's clock: one stored form (UTC), parsing back, and the one way to local time.

>>> from datetime import datetime, timedelta, timezone
>>> stamp(datetime(2026, 11, 22, 9, 14, 3, 5, tzinfo=timezone(timedelta(hours=1))))   # what every store writes
'2026-11-22T08:14:03.000005Z'
>>> stored("2026-11-22T09:14:03+01:00")               # any RFC 3339 time, as the stored form of its instant
'2026-11-22T08:14:03.000000Z'
>>> parse("2026-11-22T08:14:03Z") == parse("2026-11-22T09:14:03+01:00")   # compared as instants
True
>>> parse("2026-11-22T08:14:03").tzinfo                                   # a naive one is UTC (older files)
datetime.timezone.utc
>>> instant("2026-11-22T08:14:03")                    # but a caller's time must say its offset
Traceback (most recent call last):
ValueError: '2026-11-22T08:14:03': no UTC offset (local or UTC?); give one, or Z
>>> len(now_stamp()) == len("2026-11-22T08:14:03.123456Z")
True

The convention: every state file (journal, bill cache, cashiers) stores an instant as `stamp()` writes it: UTC,
to the microsecond, with `Z`, always 27 characters. One fixed-width form is why SQL may order and bound these
columns: their text order is their time order. A time from anywhere else (a caller, the server, an older file)
is turned into that form with `instant()` before it meets a column; it is never compared as text as it came.
A naive time (no offset) from a caller is refused (`instant`): text and datetimes would otherwise be read two
ways (naive text as UTC, a naive datetime as local time). Only `migrate_text` reads naive text as UTC, as older
files stored it.
Local time is for display only, through `local()` (the UI, the CLI, the Z report and receipts).
Journals written before migration 5 stored local time with its offset; that migration rewrote them
(`migrate_text`, registered on every connection by agent.storage as the SQL function `utc_stamp`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

FORM = "%Y-%m-%dT%H:%M:%S"  # then .ffffffZ
# The stored form as an SQL GLOB: the journal's triggers refuse any other time (an older version still running
# after the upgrade would write local time with its offset).
_D = "[0-9]"
STORED_GLOB = f"{_D * 4}-{_D * 2}-{_D * 2}T{_D * 2}:{_D * 2}:{_D * 2}.{_D * 6}Z"


_ZONE: tzinfo | None = None  # the agency's zone for display ([terminal] timezone); None: the machine's


def set_zone(zone: tzinfo | None) -> None:
    """Show local times in the agency's zone (`[terminal] timezone`, see `agency_zone`);
    None: the machine's. Set by the composition root when it loads the config, so that the UI, the CLI, the Z
    report and receipts all show the hour of the agency's business day, whatever the machine's zone is.

    >>> from zoneinfo import ZoneInfo
    >>> set_zone(ZoneInfo("Africa/Tunis")); local("2026-11-30T23:30:00Z").isoformat(); set_zone(None)
    '2026-12-01T00:30:00+01:00'
    """
    global _ZONE
    _ZONE = zone


def agency_zone(config: Any) -> tzinfo | None:
    """`[terminal] timezone` as a zone, None when it is "" (the machine's zone is the agency's).

    >>> from types import SimpleNamespace as NS
    >>> agency_zone(NS(terminal=NS(timezone="Africa/Tunis")))
    zoneinfo.ZoneInfo(key='Africa/Tunis')
    >>> agency_zone(NS(terminal=NS(timezone=""))) is None
    True
    """
    name = getattr(config.terminal, "timezone", "")
    return ZoneInfo(name) if name else None


def utc_now() -> datetime:
    """Now, aware, in UTC: what is compared and stored."""
    return datetime.now(UTC)


def local_now() -> datetime:
    """Now, aware, in the agency's zone (`set_zone`, else the machine's): for display only."""
    return datetime.now(_ZONE) if _ZONE is not None else datetime.now().astimezone()


def stamp(dt: datetime) -> str:
    """The stored form of `dt`: `2026-11-22T08:14:03.123456Z` (a naive `dt` is taken as local time)."""
    return dt.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # year: 4 digits


def parse(ts: str) -> datetime:
    """A stored or received time back as an aware datetime: RFC 3339 with an offset or `Z`; naive is UTC.
    Raises ValueError for anything else."""
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00").replace("z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def stored(ts: str | datetime) -> str:
    """Any time (text as `parse` takes it, or a datetime) in the stored form: what a column is compared with.
    ValueError for text that is no time, or one that leaves the calendar in UTC (year 1 with an offset)."""
    try:
        return stamp(ts if isinstance(ts, datetime) else parse(ts))
    except OverflowError:
        raise ValueError(f"{str(ts)[:40]!r}: out of range in UTC") from None


def instant(ts: str | datetime) -> str:
    """A time a caller hands over (seen_at, since, a snapshot time), in the stored form. It must be aware: text
    with an offset or `Z`, or a datetime with a tzinfo. ValueError (one line) for a naive one or no time."""
    if isinstance(ts, datetime):
        naive = ts.tzinfo is None or ts.utcoffset() is None
    elif isinstance(ts, str):
        try:
            naive = datetime.fromisoformat(ts.replace("Z", "+00:00").replace("z", "+00:00")).tzinfo is None
        except ValueError:
            raise ValueError(f"{ts[:40]!r}: not an RFC 3339 time") from None
    else:
        raise ValueError(f"{str(ts)[:40]!r}: not a time")
    if naive:
        raise ValueError(f"{str(ts)[:40]!r}: no UTC offset (local or UTC?); give one, or Z")
    return stored(ts)


def local(ts: str | datetime) -> datetime:
    """The one conversion for display: a stored time (or any aware datetime) in the agency's zone (`set_zone`,
    else the machine's)."""
    return (ts if isinstance(ts, datetime) else parse(ts)).astimezone(_ZONE)


def display(ts: str | datetime) -> str:
    """A stored time as the CLI shows it: local, to the second, with its offset: `2026-11-22 09:14:03+01:00`.
    Text that is not a time is shown as it is (cut to 40 characters), never a traceback."""
    try:
        return local(ts).isoformat(sep=" ", timespec="seconds")
    except (ValueError, TypeError, OverflowError):
        return str(ts)[:40]


def migrate_text(ts: str | None) -> str | None:
    """The SQL function `utc_stamp` of migrations: a stored time of an older version in the stored form.
    NULL stays NULL; a value that is not a time is kept as it is (a migration never loses a row over it)."""
    if not isinstance(ts, str):
        return ts
    try:
        return stored(ts)
    except ValueError:
        return ts


_SECOND: tuple[int, str] = (-1, "")  # the last second formatted: epoch, date and time


def now_stamp() -> str:
    """Now in the stored form. Every journal event is stamped with it, so the date and time are worked out
    once a second and only the microseconds per call."""
    global _SECOND
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    last = _SECOND
    if last[0] != second:
        last = _SECOND = (second, time.strftime(FORM, time.gmtime(second)))
    return f"{last[1]}.{micro:06d}Z"


# The names earlier versions exported (agent.payments and tests import them through agent.journal): both
# are now the stored form.
now_precise = now_stamp
now_rfc3339 = now_stamp
utc_text = stamp

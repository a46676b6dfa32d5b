"""The one home of the agent's clock: how times are read, written to state files, and parsed back.

>>> from datetime import datetime, timedelta, timezone
>>> utc_text(datetime(2026, 11, 22, 9, 14, 3, tzinfo=timezone(timedelta(hours=1))))   # the cashier file's form
'2026-11-22T08:14:03+00:00'
>>> parse("2026-11-22T08:14:03Z") == parse("2026-11-22T09:14:03+01:00")   # any stored form, as an instant
True
>>> parse("2026-11-22T08:14:03").tzinfo                                   # a naive one is UTC
datetime.timezone.utc
>>> len(now_precise()) == len("2026-11-22T09:14:03.123456+01:00")          # journal events: local, µs, offset
True

The convention: every stored time is an instant with its UTC offset written out, so it reads back the same
whatever the machine's zone is later; local time is for display only (ui.formatting turns any of them into
the counter's local date and time). Two forms are stored today:
- the cashier file (accounts, events, shifts) writes UTC (`utc_text`);
- the journal writes local time with its offset (`now_rfc3339`, `now_precise`). Its on-disk format is frozen
  and its range queries compare these strings as text, so a switch to UTC needs a journal migration that
  rewrites old rows: until then, give the journal its own form (`local_text`) when asking it for a range.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, aware, in UTC: what is compared and stored."""
    return datetime.now(UTC)


def local_now() -> datetime:
    """Now, aware, in the machine's zone: for ages against journal times and for display."""
    return datetime.now().astimezone()


def utc_text(dt: datetime) -> str:
    """The stored UTC form, to the second: `2026-11-22T08:14:03+00:00` (a naive `dt` is taken as local)."""
    return dt.astimezone(UTC).isoformat(timespec="seconds")


def local_text(dt: datetime) -> str:
    """The journal's form of `dt`, to the second: local time with its offset, `2026-11-22T09:14:03+01:00`."""
    return dt.astimezone().isoformat(timespec="seconds")


def parse(ts: str) -> datetime:
    """A stored time back as an aware datetime: RFC 3339 with an offset or `Z`; a naive one is UTC."""
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def now_rfc3339() -> str:
    """Now in the journal's form, to the second: `2026-11-22T09:14:03+01:00`."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


_SECOND: tuple[int, str, str] = (-1, "", "")  # the last second formatted: epoch, date and time, UTC offset


def now_precise() -> str:
    """Local time to the microsecond with its UTC offset: `2026-11-22T09:14:03.123456+01:00`.

    Every journal event is stamped with it, so the date, time and offset are worked out once a second
    (the offset then follows any change of the local zone) and only the microseconds per call.
    """
    global _SECOND
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    last = _SECOND
    if last[0] != second:
        stamp = datetime.fromtimestamp(second).astimezone().isoformat()  # 2026-11-22T09:14:03+01:00
        last = _SECOND = (second, stamp[:19], stamp[19:])
    return f"{last[1]}.{micro:06d}{last[2]}"

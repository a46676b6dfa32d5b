"""The doctor's check that the machine's zone agrees with the agency's (agent.clock.agency_zone: the one home of
which zone the business day, the day close and the Z report use).

    timezone_check(doctor)            # for agent.doctor's CHECKS (the lead wires it)
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from agent.clock import agency_zone  # re-exported: agent.dayclose's users import it from here
from agent.doctor import Check, Doctor, passed, skipped, warning


def zone_agrees(zone: tzinfo, now: datetime, machine: tzinfo | None = None) -> bool:
    """Whether the machine's zone (or `machine`) gives the agency's offset now and in half a year (summer
    time): a machine on UTC in Algiers would move each close's midnight by an hour.

    >>> from datetime import UTC
    >>> from zoneinfo import ZoneInfo
    >>> zone_agrees(ZoneInfo("Africa/Algiers"), datetime(2026, 11, 30, tzinfo=UTC), ZoneInfo("UTC"))
    False
    >>> zone_agrees(ZoneInfo("Africa/Algiers"), datetime(2026, 11, 30, tzinfo=UTC), ZoneInfo("Africa/Algiers"))
    True
    """
    for at in (now, now + timedelta(days=182)):
        ours = at.astimezone(machine) if machine is not None else at.astimezone()
        if ours.utcoffset() != at.astimezone(zone).utcoffset():
            return False
    return True


def timezone_check(d: Doctor) -> Check:
    """Doctor: `[terminal] timezone` against the machine's zone (a warning: the close uses the configured
    zone all the same, but the machine's clock display and logs would be off by the difference)."""
    from agent import clock

    if d.cfg is None:
        return skipped("timezone", "no valid configuration")
    zone = agency_zone(d.cfg)
    if zone is None:
        offset = datetime.now().astimezone().strftime("%z")
        return passed("timezone", f"the machine's zone (UTC{offset}) is the agency's ([terminal] timezone unset)")
    if zone_agrees(zone, clock.utc_now()):
        return passed("timezone", f"{zone} (the machine agrees)")
    machine = datetime.now().astimezone().strftime("%Z %z")
    return warning(
        "timezone",
        f"[terminal] timezone is {zone} but the machine's zone is {machine}",
        f"timedatectl set-timezone {zone}",
    )

"""Time zones for ibgw-calendar (standard library only).

The user's zone is the system local zone; the ``TZ`` environment variable overrides
it when it names an IANA zone (``TZ=Europe/Berlin``). Without a usable name the
platform's own local-time rules convert each instant (``datetime.astimezone()``),
which still follows daylight saving.
"""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LOCALTIME = "/etc/localtime"


def zone(name) -> ZoneInfo | None:
    """``ZoneInfo(name)`` or ``None`` for a missing or invalid name."""
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _system_zone_name() -> str | None:
    try:
        target = os.path.realpath(_LOCALTIME)
    except OSError:
        return None
    marker = "/zoneinfo/"
    if marker in target:
        return target.split(marker, 1)[1]
    return None


class UserZone:
    """Converts aware datetimes to the user's zone; ``label`` names the zone."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.tz: ZoneInfo | None = None
        name = env.get("TZ")
        if name:
            self.tz = zone(name.lstrip(":"))
        if self.tz is None and not name:
            self.tz = zone(_system_zone_name())
        self.label = (
            self.tz.key
            if self.tz is not None
            else (dt.datetime.now().astimezone().tzname() or "local")
        )

    def convert(self, moment: dt.datetime) -> dt.datetime:
        return moment.astimezone(self.tz) if self.tz is not None else moment.astimezone()

    def midnight(self, day: dt.date) -> dt.datetime:
        """The instant the user's ``day`` begins."""
        naive = dt.datetime.combine(day, dt.time())
        if self.tz is not None:
            return naive.replace(tzinfo=self.tz)
        return naive.astimezone()  # the platform's local rules


def hhmm(moment: dt.datetime, anchor: dt.date | None = None) -> str:
    """``"HH:MM"``, with ``" +1d"``/``" -1d"`` when ``moment`` falls on another
    calendar day than ``anchor``."""
    text = moment.strftime("%H:%M")
    if anchor is not None:
        delta = (moment.date() - anchor).days
        if delta:
            text += f" {delta:+d}d"
    return text

"""When the weekly send fires: DIGEST_SCHEDULE as an APScheduler trigger, done right.

Two things APScheduler 3.x gets wrong for an operator who writes plain crontab:

* `CronTrigger.from_crontab` reads a numeric day of week with 0 = Monday, while
  crontab means 0 (and 7) = Sunday, so `0 9 * * 5` would fire on Saturdays. The
  day-of-week field is translated to day names here, with crontab's numbering.
* In the hour that repeats when clocks go back, CronTrigger can return a time
  earlier than the one asked for, which makes a job fire again and again.
  `ScheduleTrigger` fires a repeated wall-clock time once (its first occurrence),
  like cron does; a time skipped when clocks go forward fires once, an hour later
  by the wall clock (at the same instant it would have had before the change).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.cron import CronTrigger

from digest.clock import utcnow
from digest.errors import SettingsError
from digest.settings import Settings

# Crontab numbering: 0 and 7 are Sunday.
CRON_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DOW_PART = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")
_MAX_SKIPS = 16


def _day_number(token: str, *, allow_seven: bool) -> int:
    if token in CRON_DAYS:
        return CRON_DAYS.index(token)
    if token.isdigit() and 0 <= int(token) <= (7 if allow_seven else 6):
        return int(token)
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun..sat)")


def cron_day_of_week(field: str) -> str:
    """Translate crontab's day-of-week field into APScheduler's (day names, no numbers)."""
    field = field.strip().lower()
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        m = _DOW_PART.match(part)
        if not m:
            raise ValueError(f"day of week {part!r} is not valid crontab syntax")
        base, step = m.group(1), int(m.group(2) or 1)
        if step < 1:
            raise ValueError(f"day of week {part!r}: the step must be at least 1")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            a, b = base.split("-")
            first, last = _day_number(a, allow_seven=True), _day_number(b, allow_seven=True)
            if first > last:
                raise ValueError(f"day of week {part!r}: the range runs backwards")
        else:
            first = _day_number(base, allow_seven=True)
            last = 6 if m.group(2) else first
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(CRON_DAYS[d] for d in sorted(days))


class ScheduleTrigger(CronTrigger):
    """A CronTrigger that never goes backwards and fires a repeated local time once."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        start = now
        if previous_fire_time is not None:
            start = min(now, previous_fire_time + timedelta(microseconds=1))
        found = super().get_next_fire_time(previous_fire_time, now)
        for _ in range(_MAX_SKIPS):
            if found is None:
                return None
            local = to_local(found, self.timezone)
            if local >= start and not _repeated(local):
                return local
            # Went backwards or landed on the second pass of a repeated hour: search
            # again from the end of that hour (as a fresh search, no previous time).
            found = super().get_next_fire_time(None, _fold_end(max(local, start), self.timezone))
        return None  # pragma: no cover - would need 16 DST changes in a row


def to_local(moment: datetime, tz: tzinfo) -> datetime:
    """`moment` as a real local time in `tz` (astimezone alone keeps an impossible
    wall time, or the wrong fold, when the tzinfo is already `tz`)."""
    return moment.astimezone(UTC).astimezone(tz)


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=0).utcoffset() != local.replace(fold=1).utcoffset()


def _repeated(local: datetime) -> bool:
    """True for the second occurrence of a wall-clock time when clocks go back."""
    return local.fold == 1 and _ambiguous(local)


def _fold_end(moment: datetime, tz: tzinfo) -> datetime:
    """The first whole minute after `moment` whose local time is not ambiguous."""
    t = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(6 * 60):  # no zone repeats more than a few hours
        local = to_local(t, tz)
        if not _ambiguous(local):
            return local
        t += timedelta(minutes=1)
    return to_local(t, tz)  # pragma: no cover


def make_trigger(settings: Settings) -> ScheduleTrigger:
    """DIGEST_SCHEDULE (crontab, minute resolution) in DIGEST_TIMEZONE as a trigger.

    DIGEST_SCHEDULE_SECOND (default 0) picks the second within the minute; it exists
    so the tests can schedule a send a few seconds ahead through the same code.
    """
    minute, hour, day, month, dow = settings.schedule.split()
    if day != "*" and dow != "*":
        raise SettingsError(
            "DIGEST_SCHEDULE: restricts both the day of the month and the day of the week; "
            "crontab would fire on either one, which is rarely meant: restrict only one"
        )
    try:
        return ScheduleTrigger(
            second=settings.schedule_second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=cron_day_of_week(dow),
            timezone=settings.tz,
        )
    except ValueError as exc:
        raise SettingsError(f"DIGEST_SCHEDULE: {exc}") from None


def same_trigger(a: object, b: CronTrigger) -> bool:
    """Whether a stored trigger fires exactly like `b` (then its next run time is kept)."""
    return type(a) is type(b) and repr(a) == repr(b) and str(a) == str(b)


def next_fire_times(settings: Settings, n: int = 3, now: datetime | None = None) -> list[datetime]:
    """The next `n` send times, in DIGEST_TIMEZONE."""
    trigger = make_trigger(settings)
    out: list[datetime] = []
    previous: datetime | None = None
    moment = (now or utcnow()).astimezone(settings.tz)
    while len(out) < n:
        t = trigger.get_next_fire_time(previous, moment)
        if t is None:
            break
        out.append(t)
        previous, moment = t, t + timedelta(microseconds=1)
    return out


def previous_fire_time(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time at or before `now` (within ~4 years), or None."""
    for window in (
        timedelta(minutes=2),
        timedelta(hours=2),
        timedelta(days=2),
        timedelta(days=9),
        timedelta(days=64),
        timedelta(days=400),
        timedelta(days=1500),
    ):
        t = trigger.get_next_fire_time(None, now - window)
        if t is None or t > now:
            continue
        while True:
            nxt = trigger.get_next_fire_time(t, t + timedelta(microseconds=1))
            if nxt is None or nxt > now:
                return t
            t = nxt
    return None


def describe(moment: datetime, tz: tzinfo) -> str:
    """'Fri 2026-12-04 09:00 MSK (06:00 UTC)'; the UTC date is shown when it differs."""
    local = to_local(moment, tz)
    utc = moment.astimezone(UTC)
    text = f"{local:%a %Y-%m-%d %H:%M} {local.tzname()}"
    if utc.date() == local.date():
        return f"{text} ({utc:%H:%M} UTC)"
    return f"{text} ({utc:%a %Y-%m-%d %H:%M} UTC)"


def describe_duration(seconds: float) -> str:
    """'6h', '90min', '45s': how the grace period and lateness are reported."""
    seconds = abs(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 120:
        return f"{seconds / 60:.0f}min"
    return f"{seconds:.0f}s"

"""DIGEST_SCHEDULE as a trigger: crontab day numbers, DST changes, previous fire times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from digest.errors import SettingsError
from digest.scheduling.trigger import (
    cron_day_of_week,
    describe,
    make_trigger,
    next_fire_times,
    previous_fire_time,
)
from digest.settings import Settings, load_settings

BERLIN = ZoneInfo("Europe/Berlin")


def _settings(schedule: str, tz: str = "Europe/Berlin", **kw: object) -> Settings:
    return load_settings(schedule=schedule, timezone=tz, **kw)


def _utc(times: list[datetime]) -> list[str]:
    return [t.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M") for t in times]


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("5", "fri"),
        ("0", "sun"),
        ("7", "sun"),
        ("FRI", "fri"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("0-6", "sun,mon,tue,wed,thu,fri,sat"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1,3,5", "mon,wed,fri"),
        ("1-5/2", "mon,wed,fri"),
        ("*", "*"),
    ],
)
def test_crontab_day_numbers_mean_what_crontab_means(field: str, expected: str) -> None:
    assert cron_day_of_week(field) == expected


@pytest.mark.parametrize("field", ["8", "fri-mon", "5L", "2#3", "", "1-", "*/0"])
def test_bad_day_of_week_is_refused(field: str) -> None:
    with pytest.raises(ValueError):
        cron_day_of_week(field)


def test_numeric_friday_fires_on_friday(workdir) -> None:
    # APScheduler's own from_crontab would read 5 as Saturday.
    times = next_fire_times(_settings("0 9 * * 5"), 3, datetime(2026, 11, 28, tzinfo=UTC))
    assert [t.strftime("%a %H:%M") for t in times] == ["Fri 09:00"] * 3


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 9 1 * fri", "restricts both the day of the month and the day of the week"),
        ("61 9 * * fri", "DIGEST_SCHEDULE:"),
        ("0 9 * * 9", "DIGEST_SCHEDULE: '9' is not a day of the week"),
    ],
)
def test_bad_schedule_is_one_settings_error(workdir, schedule: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        make_trigger(_settings(schedule))


def test_weekly_send_keeps_local_time_across_both_dst_changes(workdir) -> None:
    s = _settings("0 9 * * fri")
    spring = next_fire_times(s, 3, datetime(2026, 3, 21, tzinfo=UTC))
    assert [t.strftime("%Y-%m-%d %H:%M %Z") for t in spring] == [
        "2026-03-27 09:00 CET",
        "2026-04-03 09:00 CEST",
        "2026-04-10 09:00 CEST",
    ]
    assert _utc(spring) == ["Fri 2026-03-27 08:00", "Fri 2026-04-03 07:00", "Fri 2026-04-10 07:00"]
    autumn = next_fire_times(s, 2, datetime(2026, 10, 20, tzinfo=UTC))
    assert _utc(autumn) == ["Fri 2026-10-23 07:00", "Fri 2026-10-30 08:00"]


def test_time_in_the_repeated_hour_fires_once(workdir) -> None:
    # 2026-10-25: Berlin's clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    times = next_fire_times(_settings("30 2 * * *"), 3, datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert _utc(times) == ["Sun 2026-10-25 00:30", "Mon 2026-10-26 01:30", "Tue 2026-10-27 01:30"]
    # Every 20 minutes from 02:00 to 03:59: the repeated hour is not fired a second time,
    # and the list always moves forward.
    times = next_fire_times(_settings("*/20 2-3 * * *"), 7, datetime(2026, 10, 24, 12, tzinfo=UTC))
    assert times == sorted(set(times))
    assert _utc(times) == [
        "Sun 2026-10-25 00:00",
        "Sun 2026-10-25 00:20",
        "Sun 2026-10-25 00:40",
        "Sun 2026-10-25 02:00",
        "Sun 2026-10-25 02:20",
        "Sun 2026-10-25 02:40",
        "Mon 2026-10-26 01:00",
    ]


def test_time_skipped_in_spring_fires_once_an_hour_later(workdir) -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 CET to 03:00 CEST; 02:30 never happens.
    times = next_fire_times(_settings("30 2 * * *"), 3, datetime(2026, 3, 28, 12, tzinfo=UTC))
    assert [t.strftime("%m-%d %H:%M %Z") for t in times] == [
        "03-29 03:30 CEST",
        "03-30 02:30 CEST",
        "03-31 02:30 CEST",
    ]


def test_moscow_has_no_dst(workdir) -> None:
    times = next_fire_times(
        _settings("0 9 * * fri", "Europe/Moscow"), 2, datetime(2026, 3, 20, tzinfo=UTC)
    )
    assert {t.utcoffset() for t in times} == {timedelta(hours=3)}


def test_previous_fire_time(workdir) -> None:
    trigger = make_trigger(_settings("0 9 * * fri"))
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)  # a Tuesday
    assert previous_fire_time(trigger, now) == datetime(2026, 11, 27, 9, tzinfo=BERLIN)
    exact = datetime(2026, 11, 27, 9, tzinfo=BERLIN)
    assert previous_fire_time(trigger, exact) == exact
    seconds = make_trigger(_settings("* * * * *", schedule_second="*/5"))
    assert previous_fire_time(seconds, datetime(2026, 12, 1, 12, 0, 7, tzinfo=UTC)) == datetime(
        2026, 12, 1, 12, 0, 5, tzinfo=UTC
    )


def test_describe_shows_both_zones() -> None:
    moscow = ZoneInfo("Europe/Moscow")
    assert describe(datetime(2026, 12, 4, 9, tzinfo=moscow), moscow) == (
        "Fri 2026-12-04 09:00 MSK (06:00 UTC)"
    )
    assert describe(datetime(2026, 12, 4, 1, 30, tzinfo=moscow), moscow) == (
        "Fri 2026-12-04 01:30 MSK (Thu 2026-12-03 22:30 UTC)"
    )

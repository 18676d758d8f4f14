"""When periodic jobs fall: cron expressions in a zone (daylight saving included) and
intervals, computed from a fixed clock."""

from datetime import datetime

import pytest

from job_worker.queue.schedule import Schedule

BRUSSELS = "Europe/Brussels"


def test_daily_0230_runs_once_at_0300_on_the_spring_forward_day():
    schedule = Schedule(cron="30 2 * * *", tz=BRUSSELS)
    # 2026-03-29: clocks go from 02:00 to 03:00 (CET -> CEST)
    assert schedule.upcoming(datetime(2026, 3, 28, 12, 0), 3) == [
        datetime(2026, 3, 29, 1, 0),  # 03:00 CEST, the first valid time after 02:30
        datetime(2026, 3, 30, 0, 30),  # 02:30 CEST
        datetime(2026, 3, 31, 0, 30),
    ]


def test_daily_0230_runs_once_not_twice_on_the_fall_back_day():
    schedule = Schedule(cron="30 2 * * *", tz=BRUSSELS)
    # 2026-10-25: 02:00-03:00 happens twice (CEST then CET)
    assert schedule.upcoming(datetime(2026, 10, 24, 12, 0), 3) == [
        datetime(2026, 10, 25, 0, 30),  # 02:30 CEST, the first time
        datetime(2026, 10, 26, 1, 30),  # 02:30 CET the next day
        datetime(2026, 10, 27, 1, 30),
    ]
    # resumed from the stored occurrence, the repeated 02:30 is not run again
    assert schedule.after(datetime(2026, 10, 25, 0, 30)) == datetime(2026, 10, 26, 1, 30)


def test_hourly_runs_at_each_real_hour_of_the_fall_back_day():
    schedule = Schedule(cron="0 * * * *", tz=BRUSSELS)
    assert schedule.upcoming(datetime(2026, 10, 24, 23, 30), 3) == [
        datetime(2026, 10, 25, 0, 0),  # 02:00 CEST
        datetime(2026, 10, 25, 1, 0),  # 02:00 CET
        datetime(2026, 10, 25, 2, 0),  # 03:00 CET
    ]


def test_interval_is_exact_in_utc_across_daylight_saving():
    schedule = Schedule(interval=3600, tz=BRUSSELS)
    assert schedule.upcoming(datetime(2026, 3, 29, 0, 0), 3) == [
        datetime(2026, 3, 29, 1, 0),
        datetime(2026, 3, 29, 2, 0),
        datetime(2026, 3, 29, 3, 0),
    ]


def test_interval_first_occurrence_is_one_interval_after_creation_in_whole_seconds():
    assert Schedule(interval=10).first(datetime(2026, 1, 1, 0, 0, 0, 500)) == datetime(
        2026, 1, 1, 0, 0, 10
    )


def test_due_lists_the_missed_occurrences_and_the_next_one():
    schedule = Schedule(interval=60)
    kept, count, following = schedule.due(datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 9, 30), 3)
    assert count == 10
    assert kept == [datetime(2026, 1, 1, 0, m) for m in (7, 8, 9)]
    assert following == datetime(2026, 1, 1, 0, 10)
    cron = Schedule(cron="*/5 * * * *")
    kept, count, following = cron.due(datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 12), 100)
    assert (kept, count, following) == (
        [datetime(2026, 1, 1, 0, m) for m in (0, 5, 10)],
        3,
        datetime(2026, 1, 1, 0, 15),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"cron": "* * * *"}, "needs 5 fields"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"interval": 0}, "interval must be a whole number of seconds > 0, got 0"),
        ({"interval": -5}, "got -5"),
        ({}, "not neither"),
        ({"cron": "0 3 * * *", "interval": 5}, "not both"),
    ],
)
def test_bad_schedules_are_refused_with_the_problem_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        Schedule(**kwargs)

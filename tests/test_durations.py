"""One way to write a duration, whoever shows it."""

from __future__ import annotations

import math

import pytest

from job_worker.durations import duration_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (89.4, "89 s"),
        (90, "2 min"),
        (-150, "2 min"),  # the sign is the caller's: "in ..." or "... ago"
        (3599, "60 min"),
        (3600, "1.0 h"),
        (9000, "2.5 h"),
        (172800, "2 d"),
        (30 * 86400, "30 d"),
    ],
)
def test_an_age_or_a_wait_reads_in_whole_units(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "< 1 ms"),
        (0.0004, "< 1 ms"),
        (0.25, "250 ms"),
        (3.021, "3.02 s"),
        (119.9, "119.90 s"),
        (240, "4 min"),
        (9000, "2.5 h"),
        (3 * 86400, "3 d"),
    ],
)
def test_a_run_time_keeps_its_milliseconds(seconds, text):
    assert duration_text(seconds, fine=True) == text


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_duration_that_is_not_a_number_is_refused(value):
    with pytest.raises(ValueError, match="finite number of seconds"):
        duration_text(value)

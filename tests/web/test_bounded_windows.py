"""Windows of finished jobs stay bounded however many jobs finish in them: the KPIs'
failure rate of a capped hour, and the live tail of /metrics."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from job_worker.monitoring import kpis, stats
from job_worker.monitoring.models import snapshot

pytestmark = pytest.mark.timeout(60)


def add_job(cr, state: str, channel: str, finished, *, duration: float = 0.5) -> None:
    cr.execute(
        "INSERT INTO queue_job (uuid, model_name, method_name, state, priority, channel,"
        " scheduled_at, fair_key, weight, started_at, write_date, duration)"
        " VALUES (%s, 'res.partner', 'exists', %s, 10, %s, %s, '', 1, %s, %s, %s)",
        [str(uuid.uuid4()), state, channel, finished, finished, finished, duration],
    )


def test_a_capped_hour_takes_its_failure_rate_over_the_latest_jobs(registry, monkeypatch):
    monkeypatch.setattr(stats, "WINDOW_CAP", 4)
    monkeypatch.setattr(stats, "SAMPLE", 2)
    now = stats.now()
    with registry.cursor() as cr:
        for minutes in (50, 49, 48, 47, 46, 45, 2):
            add_job(cr, "done", "root", now - timedelta(minutes=minutes))
        add_job(cr, "failed", "root", now - timedelta(minutes=1))
        win = stats.window(cr, now - timedelta(hours=1))
        assert (win.done, win.failed, win.capped) == (4, 1, True)
        # the two latest done jobs (45 and 2 minutes ago) and the failure since
        assert win.rate_since == now - timedelta(minutes=45)
        assert win.rate_counts == (2, 1) and win.failure_rate == pytest.approx(1 / 3)
        # the durations' sample gives the 2nd latest done job's finish: one query less,
        # the same rate as read without the sample
        before = cr.sql_count
        counts_only = stats.window(cr, now - timedelta(hours=1), sample=False)
        without_sample = cr.sql_count - before
        assert (counts_only.rate_since, counts_only.rate_counts) == (
            win.rate_since,
            win.rate_counts,
        )
        before = cr.sql_count
        stats.window(cr, now - timedelta(hours=1))
        assert cr.sql_count - before == without_sample  # the sample's query, one OFFSET less
        uncapped = stats.window(cr, now - timedelta(minutes=10))
        assert uncapped.rate_counts is None and uncapped.failure_rate == pytest.approx(1 / 2)


def test_the_live_tail_of_metrics_counts_its_oldest_jobs_and_never_goes_back(registry, monkeypatch):
    monkeypatch.setattr(snapshot, "TAIL_CAP", 3)
    now = stats.now()
    start = now - timedelta(minutes=10)
    with registry.cursor() as cr:
        for minutes, channel in ((9, "old"), (8, "old"), (7, "old"), (6, "new"), (5, "new")):
            add_job(cr, "done", channel, now - timedelta(minutes=minutes), duration=0.02)
        tail = snapshot.interval_counts(cr, start, None)
        assert (tail.get(("done", "old", "")), tail.get(("done", "new", ""))) == (3, None)
        assert tail[("started", "old", "")] == 3 and ("started", "new", "") not in tail
        assert tail[("duration_count", snapshot.ALL, "")] == 3
        # a snapshot took the first two minutes: the jobs the tail counted stay counted
        taken = snapshot.interval_counts(cr, start, now - timedelta(minutes=7, seconds=30))
        later = snapshot.interval_counts(cr, now - timedelta(minutes=7, seconds=30), None)
        assert taken[("done", "old", "")] + later[("done", "old", "")] == 3
        assert later.get(("done", "new", "")) == 2
        # an interval that ended is counted whole, whatever the cap
        whole = snapshot.interval_counts(cr, start, now)
        assert (whole[("done", "old", "")], whole[("done", "new", "")]) == (3, 2)
        assert whole[("started", "new", "")] == 2


def test_each_kpis_cap_lies_at_or_above_its_thresholds():
    """A count that stopped at the cap is at least the cap: its level is still exact."""
    for key, (warn, crit, _direction) in kpis.THRESHOLDS.items():
        assert kpis.cap(key) >= kpis.KPI_CAP and max(warn, crit) <= kpis.cap(key)
    assert kpis.cap("queue_depth") == 10_000 and kpis.cap("failed_jobs") == kpis.KPI_CAP
    assert kpis.level("queue_depth", kpis.cap("queue_depth")) == "crit"
    raised = {**kpis.THRESHOLDS, "failed_jobs": (10, 5_000.5, "above")}
    assert kpis.cap("failed_jobs", raised) == 5_001


def test_a_capped_kpi_shows_its_cap_and_its_exact_level(registry, monkeypatch):
    monkeypatch.setattr(kpis, "KPI_CAP", 3)
    now = stats.now()
    with registry.cursor() as cr:
        for minutes in range(5):
            add_job(cr, "failed", "root", now - timedelta(minutes=minutes))
        low = {**kpis.THRESHOLDS, "failed_jobs": (1, 2, "above")}
        figures = {k.key: k for k in kpis.compute(cr, now, thresholds=low)}
        assert figures["failed_jobs"].value == 3 and figures["failed_jobs"].display == "3+"
        assert figures["failed_jobs"].level == "crit"
        # a critical threshold (100) above the cap: the count goes on up to it
        figures = {k.key: k for k in kpis.compute(cr, now)}
        assert figures["failed_jobs"].value == 5 and figures["failed_jobs"].display == "5"


def test_the_top_failure_is_the_first_of_the_failures_given(registry):
    """`job-worker stats` reads the top failures once: the KPI takes the first of them."""
    now = stats.now()
    with registry.cursor() as cr:
        add_job(cr, "failed", "root", now - timedelta(minutes=1))
        cr.execute("UPDATE queue_job SET exc_name = 'app.Boom', user_id = 1")
        assert stats.top_failures(cr, now - timedelta(days=1)) == [("app.Boom", 1)]
        assert stats.top_failures(cr, now - timedelta(days=1), user_id=2) == []
        before = cr.sql_count
        figures = {k.key: k for k in kpis.compute(cr, now, failures=[("app.Other", 7)])}
        assert figures["top_failure"].value == "app.Other"
        assert "7 job(s)" in figures["top_failure"].hint
        without = cr.sql_count - before
        before = cr.sql_count
        figures = {k.key: k for k in kpis.compute(cr, now)}
        assert figures["top_failure"].value == "app.Boom"
        assert cr.sql_count - before == without + 1


@pytest.mark.parametrize("window_sort", [100, 3])
def test_a_list_of_a_window_of_time_pages_alike_sorted_or_walked(
    registry, monkeypatch, window_sort
):
    """Finished within an hour: read through the window and sorted when it holds few
    jobs, walked down the ids when many; the same pages either way."""
    from job_worker.monitoring import joblist

    monkeypatch.setattr(joblist, "WINDOW_SORT", window_sort)
    now = stats.now()
    with registry.cursor() as cr:
        for minutes in (90, 50, 40, 30, 20, 10, 5):
            add_job(cr, "done", "root", now - timedelta(minutes=minutes))
        add_job(cr, "failed", "root", now - timedelta(minutes=1))
        cr.execute("SELECT id FROM queue_job ORDER BY id")
        ids = [row[0] for row in cr.fetchall()]
        flt = joblist.JobFilter(state="done", finished="1h")
        first = joblist.list_jobs(cr, flt, limit=4, now=now)
        assert [r["id"] for r in first.rows] == ids[1:7][::-1][:4]
        second = joblist.list_jobs(cr, flt, before=first.next_before, limit=4, now=now)
        assert [r["id"] for r in second.rows] == ids[1:3][::-1] and second.next_before is None
        back = joblist.list_jobs(cr, flt, after=second.prev_after, limit=4, now=now)
        assert [r["id"] for r in back.rows] == [r["id"] for r in first.rows]


@pytest.mark.parametrize("window_sort", [100, 2])
def test_finished_within_any_state_merges_each_states_jobs(registry, monkeypatch, window_sort):
    from job_worker.monitoring import joblist

    monkeypatch.setattr(joblist, "WINDOW_SORT", window_sort)
    now = stats.now()
    with registry.cursor() as cr:
        for state, minutes in (("done", 90), ("failed", 50), ("done", 40), ("cancelled", 30)):
            add_job(cr, state, "root", now - timedelta(minutes=minutes))
        add_job(cr, "pending", "root", now)  # newer, not finished
        for state, minutes in (("done", 20), ("failed", 10)):
            add_job(cr, state, "root", now - timedelta(minutes=minutes))
        cr.execute("SELECT id, state FROM queue_job ORDER BY id")
        ids = [job_id for job_id, state in cr.fetchall()]
        flt = joblist.JobFilter(finished="1h")
        first = joblist.list_jobs(cr, flt, limit=3, now=now)
        assert [r["id"] for r in first.rows] == [ids[6], ids[5], ids[3]]
        second = joblist.list_jobs(cr, flt, before=first.next_before, limit=3, now=now)
        assert [r["id"] for r in second.rows] == [ids[2], ids[1]] and second.next_before is None


def add_pending(cr, due) -> int:
    cr.execute(
        "INSERT INTO queue_job (uuid, model_name, method_name, state, priority, channel,"
        " scheduled_at, fair_key, weight, write_date)"
        " VALUES (%s, 'res.partner', 'exists', 'pending', 10, 'root', %s, '', 1, %s)",
        [str(uuid.uuid4()), due, due],
    )
    cr.execute("SELECT MAX(id) FROM queue_job")
    return cr.fetchone()[0]


@pytest.mark.parametrize("window_sort", [100, 2])
def test_aged_jobs_list_latest_due_first_and_page_by_due_time(registry, monkeypatch, window_sort):
    """The aged list is ordered by when the jobs became due, then by id (ties), not by
    id: a job enqueued last but due long ago comes last; newer pending jobs (a backlog
    being drained) are never read. Sorted or walked, the pages are the same."""
    from job_worker.monitoring import joblist

    monkeypatch.setattr(joblist, "WINDOW_SORT", window_sort)
    now = stats.now()
    old = now - stats.AGED_PENDING - timedelta(minutes=1)
    with registry.cursor() as cr:
        a = add_pending(cr, old - timedelta(hours=2))
        b = add_pending(cr, old - timedelta(hours=1))
        c = add_pending(cr, old - timedelta(hours=1))  # the same due time as b
        d = add_pending(cr, old)
        for _ in range(3):
            add_pending(cr, now)  # due now: not aged
        e = add_pending(cr, old - timedelta(hours=3))  # enqueued last, due first of all
        flt = joblist.JobFilter(aged=True)
        first = joblist.list_jobs(cr, flt, limit=2, now=now)
        assert [r["id"] for r in first.rows] == [d, c] and first.prev_after is None
        second = joblist.list_jobs(cr, flt, before=first.next_before, limit=2, now=now)
        assert [r["id"] for r in second.rows] == [b, a]
        third = joblist.list_jobs(cr, flt, before=second.next_before, limit=2, now=now)
        assert [r["id"] for r in third.rows] == [e] and third.next_before is None
        back = joblist.list_jobs(cr, flt, after=third.prev_after, limit=2, now=now)
        assert [r["id"] for r in back.rows] == [b, a]
        assert back.prev_after == b and back.next_before == a
        top = joblist.list_jobs(cr, flt, after=back.prev_after, limit=2, now=now)
        assert [r["id"] for r in top.rows] == [d, c] and top.prev_after is None


def test_a_window_page_from_a_deleted_job_ends_the_list(registry):
    from job_worker.monitoring import joblist

    now = stats.now()
    with registry.cursor() as cr:
        for minutes in (30, 20, 10):
            add_job(cr, "done", "root", now - timedelta(minutes=minutes))
        flt = joblist.JobFilter(state="done", finished="1h")
        first = joblist.list_jobs(cr, flt, limit=1, now=now)
        cr.execute("DELETE FROM queue_job WHERE id = %s", [first.next_before])
        page = joblist.list_jobs(cr, flt, before=first.next_before, limit=1, now=now)
        assert (page.rows, page.next_before, page.prev_after) == ([], None, None)


def test_finished_within_lists_by_finish_time_not_by_id(registry):
    """A job enqueued early that finished last is the first of "finished within"."""
    from job_worker.monitoring import joblist

    now = stats.now()
    with registry.cursor() as cr:
        add_job(cr, "done", "root", now - timedelta(minutes=1))  # oldest id, latest finish
        add_job(cr, "failed", "root", now - timedelta(minutes=30))
        add_job(cr, "done", "root", now - timedelta(minutes=20))
        cr.execute("SELECT id FROM queue_job ORDER BY id")
        first, second, third = (row[0] for row in cr.fetchall())
        page = joblist.list_jobs(cr, joblist.JobFilter(finished="1h"), limit=5, now=now)
        assert [r["id"] for r in page.rows] == [first, third, second]

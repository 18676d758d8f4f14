"""A text search, or a filter on a column without an index, reads a bounded window of
ids per page and says which; a job id or a uuid is looked up (monitoring.joblist)."""

from __future__ import annotations

import pytest

from job_worker.monitoring import joblist

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def jobs(env):
    """35 jobs; the 4th and the 31st have "needle" in their description."""
    ids = []
    for i in range(35):
        name = f"needle {i}" if i in (3, 30) else f"hay {i}"
        job = env["queue.job"].enqueue("res.partner", "send_reminder", [], description=name)
        ids.append(job.id)
    return ids


@pytest.fixture
def window(monkeypatch):
    monkeypatch.setattr(joblist, "SEARCH_WINDOW", 10)
    return 10


def names(page) -> list[str]:
    return [row["name"] for row in page.rows]


def test_a_search_walks_back_one_window_a_page_and_says_where_it_looked(env, jobs, window):
    flt = joblist.JobFilter(q="needle")
    first = joblist.list_jobs(env.cr, flt)
    assert names(first) == ["needle 30"]
    assert first.searched == (jobs[25], jobs[34])
    assert first.next_before == jobs[25] and first.prev_after is None
    empty = joblist.list_jobs(env.cr, flt, before=first.next_before)
    assert empty.rows == [] and empty.searched == (jobs[15], jobs[24])
    assert empty.next_before == jobs[15] and empty.prev_after == jobs[24]
    seen, before = [], first.next_before
    while before is not None:
        page = joblist.list_jobs(env.cr, flt, before=before)
        seen += names(page)
        before = page.next_before
    assert seen == ["needle 3"]  # and the walk stops at the oldest job
    back = joblist.list_jobs(env.cr, flt, after=jobs[5])
    assert names(back) == [] and back.searched == (jobs[6], jobs[15])
    assert back.prev_after == jobs[15] and back.next_before == jobs[6]


def test_a_full_page_goes_on_from_its_last_row_as_an_unbounded_one(env, jobs, window):
    page = joblist.list_jobs(env.cr, joblist.JobFilter(q="hay"), limit=4)
    assert names(page) == ["hay 34", "hay 33", "hay 32", "hay 31"]
    assert page.searched is None and page.next_before == jobs[31]
    unbounded = joblist.list_jobs(env.cr, joblist.JobFilter(), limit=4)
    assert unbounded.searched is None and names(unbounded)[0] == "hay 34"


def test_filters_on_unindexed_columns_are_bounded_ids_and_graphs_are_not(env, jobs, window):
    assert joblist.JobFilter(model="res.partner").bounded
    assert joblist.JobFilter(exc_name="ValueError").bounded
    assert not joblist.JobFilter(state="pending", channel="root").bounded
    assert not joblist.JobFilter(model="res.partner", graph="g").bounded
    page = joblist.list_jobs(env.cr, joblist.JobFilter(method="nothing_has_this"))
    assert page.rows == [] and page.searched == (jobs[25], jobs[34])


@pytest.mark.parametrize("text", ["{id}", "#{id}", " #{id} "])
def test_a_job_id_is_looked_up_whatever_its_age(env, jobs, window, text):
    flt = joblist.JobFilter(q=text.format(id=jobs[2]))
    assert not flt.bounded
    page = joblist.list_jobs(env.cr, flt)
    assert [row["id"] for row in page.rows] == [jobs[2]] and page.searched is None
    uuid = env["queue.job"].browse(jobs[1]).uuid
    assert [r["id"] for r in joblist.list_jobs(env.cr, joblist.JobFilter(q=uuid)).rows] == [jobs[1]]


def test_an_empty_queue_answers_an_empty_page(env, window):
    page = joblist.list_jobs(env.cr, joblist.JobFilter(q="needle"))
    assert page.rows == [] and page.next_before is None and page.searched is None


def test_the_job_list_page_says_how_far_a_search_looked(manager, scenario, window):
    page = manager.get("/jobs?q=nothing-has-this")
    assert page.status_code == 200 and "No job matches these filters." in page.text
    assert "Searched jobs #" in page.text and "10 ids at most per page" in page.text
    found = manager.get(f"/jobs?q=%23{scenario.failed}")
    assert f'href="/jobs/{scenario.failed}"' in found.text and "Searched jobs" not in found.text


def test_the_channel_filter_lists_every_channel_without_counting(env):
    from job_worker.monitoring import stats

    env["queue.limit"].set_limit("limited", 2)
    for channel in ("exports", "mail", "exports"):
        env["queue.job"].enqueue("res.partner", "send_reminder", [], channel=channel)
    done = env["queue.job"].enqueue("res.partner", "send_reminder", [], channel="archive")
    env.cr.execute("UPDATE queue_job SET state = 'done' WHERE id = %s", [done.id])
    statements = env.cr.sql_count
    assert stats.channel_names(env.cr) == ["archive", "exports", "limited", "mail"]
    assert env.cr.sql_count - statements == 1

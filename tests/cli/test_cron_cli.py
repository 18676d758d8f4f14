"""``job-worker cron``: periodic jobs made, changed, paused, resumed, run and deleted
from the command line; bad input refused with nothing written."""

from __future__ import annotations

import json

import pytest

from job_worker import SUPERUSER_ID, api

pytestmark = pytest.mark.timeout(60)


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def add(cli, *extra):
    return cli("cron", "add", "export", "res.partner", "export", *extra)


def count_rows(registry, table):
    with registry.cursor(readonly=True) as cr:
        cr.execute(f"SELECT count(*) FROM {table}")
        return cr.fetchone()[0]


def test_add_then_list_shows_the_schedule_and_next_occurrence(cli, ops_registry):
    made = as_json(add(cli, "--cron", "0 3 * * *", "--tz", "Europe/Brussels", "--json"))
    assert made["schedule"] == "0 3 * * *" and made["active"] is True
    (row,) = as_json(cli("cron", "list", "--json"))
    assert (row["id"], row["name"], row["tz"]) == (made["id"], "export", "Europe/Brussels")
    assert row["next_at"] is not None and row["last_job"] is None
    plain = cli("cron", "list")
    assert "0 3 * * *" in plain.output and "export" in plain.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 3 * *"], "needs 5 fields"),
        (["--cron", "0 3 * * *", "--tz", "Mars/Base"], "unknown time zone 'Mars/Base'"),
        (["--interval", "0"], "interval must be a whole number of seconds > 0"),
        (["--interval", "60", "--channel", "a b"], "channel must be"),
        (["--interval", "60", "--args", "{}"], "must be a JSON list"),
        ([], "either a cron expression or an interval"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(cli, ops_registry, args, message):
    result = add(cli, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert count_rows(ops_registry, "queue_cron") == 0


def test_unknown_method_is_refused(cli, ops_registry):
    result = cli("cron", "add", "x", "res.partner", "nope", "--interval", "60")
    assert result.exit_code == 2 and "has no method 'nope'" in result.output
    result = cli("cron", "add", "x", "no.model", "export", "--interval", "60")
    assert result.exit_code == 2 and "unknown model 'no.model'" in result.output


def test_set_pause_resume_and_delete(cli, ops_registry):
    made = as_json(add(cli, "--interval", "60", "--json"))
    changed = as_json(cli("cron", "set", "export", "--cron", "*/5 * * * *", "--json"))
    assert (changed["cron"], changed["interval"]) == ("*/5 * * * *", None)
    assert as_json(cli("cron", "pause", str(made["id"]), "--json"))["active"] is False
    resumed = as_json(cli("cron", "resume", "export", "--json"))
    assert resumed["active"] is True and resumed["next_at"] is not None
    assert cli("cron", "set", "export", "--tz", "Nowhere").exit_code == 2
    assert as_json(cli("cron", "delete", "export", "--json"))["deleted"] is True
    assert count_rows(ops_registry, "queue_cron") == 0
    missing = cli("cron", "pause", "export")
    assert missing.exit_code == 1 and "no periodic job with id or name 'export'" in missing.output


def test_run_now_enqueues_one_job_without_moving_the_next_occurrence(cli, ops_registry):
    made = as_json(add(cli, "--interval", "3600", "--json"))
    ran = as_json(cli("cron", "run-now", "export", "--json"))
    (row,) = as_json(cli("cron", "list", "--json"))
    assert row["next_at"] == made["next_at"]
    assert (row["last_job"], row["last_state"], row["enqueued"]) == (ran["job"], "pending", 1)
    with ops_registry.cursor(readonly=True) as cr:
        job = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(ran["job"])
        assert (job.cron_id.id, job.method_name) == (made["id"], "export")


def test_jobs_list_filters_by_cron_and_show_names_the_occurrence(cli, ops_registry):
    made = as_json(add(cli, "--interval", "3600", "--json"))
    ran = as_json(cli("cron", "run-now", "export", "--json"))
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["res.partner"].with_delay().export()
    listed = as_json(cli("jobs", "list", "--cron", str(made["id"]), "--json"))["jobs"]
    assert [(j["id"], j["cron_id"]) for j in listed] == [(ran["job"], made["id"])]
    assert len(as_json(cli("jobs", "list", "--json"))["jobs"]) == 2
    shown = cli("jobs", "show", str(ran["job"]))
    assert f"{made['id']}, run now, outside the schedule" in shown.output
    assert as_json(cli("jobs", "show", str(ran["job"]), "--json"))["cron_id"] == made["id"]
    explained = cli("jobs", "explain", str(ran["job"]))
    assert f"outside the schedule of periodic job {made['id']} (export)" in explained.output

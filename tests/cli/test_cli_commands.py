"""The ``job-worker`` commands in-process: output forms, pagination, actions and exit codes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.monitoring import stats

pytestmark = pytest.mark.timeout(90)


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_jobs_list_prints_plain_aligned_text_when_piped(cli, scenario):
    result = cli("jobs", "list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "id",
        "state",
        "channel",
        "priority",
        "call",
        "attempts",
        "created",
        "exception",
    ]
    assert "\x1b[" not in result.output  # no colour codes off a terminal
    assert any(line.startswith(f"{scenario.failed} ") and "failed" in line for line in lines)


def test_jobs_list_pages_with_keyset_and_filters(cli, scenario):
    first = as_json(cli("jobs", "list", "--json", "--limit", "3"))
    ids = [job["id"] for job in first["jobs"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    second = as_json(
        cli("jobs", "list", "--json", "--limit", "3", "--before", str(first["next_before"]))
    )
    assert max(job["id"] for job in second["jobs"]) < min(ids)
    back = as_json(
        cli("jobs", "list", "--json", "--limit", "3", "--after", str(second["prev_after"]))
    )
    assert [job["id"] for job in back["jobs"]] == ids
    failed = as_json(cli("jobs", "list", "--json", "--state", "failed"))
    assert [job["id"] for job in failed["jobs"]] == [scenario.failed]
    carol = as_json(cli("jobs", "list", "--json", "--user", "carol"))
    assert [job["id"] for job in carol["jobs"]] == [scenario.carol_pending]
    found = as_json(cli("jobs", "list", "--json", "-q", "nightly"))
    assert [job["id"] for job in found["jobs"]] == [scenario.pending]
    exhausted = as_json(cli("jobs", "list", "--json", "--exhausted", "--finished", "1h"))
    assert [job["id"] for job in exhausted["jobs"]] == [scenario.failed]


def test_jobs_list_refuses_bad_filters_with_usage_exit_code(cli, scenario):
    assert cli("jobs", "list", "--state", "sleeping").exit_code == 2
    assert cli("jobs", "list", "--finished", "yesterday").exit_code == 2
    assert cli("jobs", "list", "--user", "nobody").exit_code == 1


def test_jobs_show_gives_call_traceback_and_explanation(cli, scenario):
    result = cli("jobs", "show", str(scenario.failed))
    assert result.exit_code == 0
    assert "Push to ERP" in result.output
    assert "ValueError: export target refused the file" in result.output
    assert "it will not run again unless requeued" in result.output
    data = as_json(cli("jobs", "show", str(scenario.chain_second), "--json"))
    assert data["depends_on"] == [{"id": scenario.chain_first, "kind": "done", "state": "pending"}]
    assert data["explain"][0]["code"] == "waiting_parents"
    assert data["identity_key"] is None


def test_missing_job_exits_with_one(cli, scenario):
    for args in (("jobs", "show", "999"), ("jobs", "explain", "999"), ("jobs", "requeue", "999")):
        result = cli(*args)
        assert result.exit_code == 1
        assert "no job with id 999" in result.output


def test_requeue_then_refused_action_exit_codes(cli, scenario, ops_registry):
    assert as_json(cli("jobs", "requeue", str(scenario.failed), "--json")) == [
        {"id": scenario.failed, "state": "pending"}
    ]
    refused = cli("jobs", "requeue", str(scenario.pending))
    assert refused.exit_code == 1
    assert "only failed, cancelled, done jobs can" in refused.output
    assert cli("jobs", "cancel", str(scenario.pending)).exit_code == 0
    assert cli("jobs", "fail", str(scenario.carol_pending), "--message", "bad data").exit_code == 0
    assert cli("jobs", "done", str(scenario.chain_first)).exit_code == 0
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        jobs = env["queue.job"].browse(
            [scenario.pending, scenario.carol_pending, scenario.chain_second]
        )
        assert jobs.mapped("state") == ["cancelled", "failed", "pending"]
        assert jobs[1].exc_message == "bad data"


def test_jobs_explain_prints_reasons_with_codes(cli, scenario):
    result = cli("jobs", "explain", str(scenario.chain_second))
    assert result.exit_code == 0
    assert f"waiting on 1 parent(s): job {scenario.chain_first}" in result.output
    assert "[waiting_parents]" in result.output
    data = as_json(cli("jobs", "explain", str(scenario.pending), "--json"))
    assert [r["code"] for r in data["reasons"]] == ["no_worker"]


def test_limits_set_list_delete(cli, scenario):
    assert cli("limits", "set", "exports", "3", "--rate", "2.5").exit_code == 0
    rows = as_json(cli("limits", "list", "--json"))
    exports = next(row for row in rows if row["channel"] == "exports")
    assert (exports["limit"], exports["rate_limit"], exports["configured"], exports["pending"]) == (
        3,
        2.5,
        "yes",
        1,
    )
    assert cli("limits", "set", "bad channel!", "1").exit_code == 2
    assert cli("limits", "set", "exports", "-1").exit_code == 2
    assert cli("limits", "delete", "exports").exit_code == 0
    assert cli("limits", "delete", "exports").exit_code == 1


def test_enqueue_creates_a_job_and_refuses_bad_calls(cli, scenario, ops_registry):
    data = as_json(
        cli(
            "enqueue",
            "res.partner",
            "export",
            "--ids",
            "1,2",
            "--args",
            '["pdf"]',
            "--priority",
            "3",
            "--channel",
            "exports",
            "--eta",
            "60",
            "--user",
            "bob",
            "--json",
        )
    )
    with ops_registry.cursor() as cr:
        job = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(data["id"])
        assert (job.record_ids, job.args, job.priority, job.channel) == (
            [1, 2],
            ["pdf"],
            3,
            "exports",
        )
        assert job.user_id.login == "bob"
        assert job.scheduled_at > stats.now() + timedelta(seconds=30)
    assert cli("enqueue", "res.partner", "no_such_method").exit_code == 2
    assert cli("enqueue", "no.model", "export").exit_code == 2
    assert cli("enqueue", "res.partner", "export", "--args", "{not json").exit_code == 2
    assert cli("enqueue", "res.partner", "export", "--kwargs", "[1]").exit_code == 2
    assert cli("enqueue", "res.partner", "export", "--priority", "-x").exit_code == 2


def test_stats_reports_kpis_channels_and_workers(cli, scenario):
    data = as_json(cli("stats", "--json"))
    kpis = {k["key"]: k for k in data["kpis"]}
    assert kpis["failed_jobs"]["value"] == 1
    assert kpis["queue_depth"]["value"] == 3  # due pending: nightly export, carol's, chain step 1
    assert kpis["active_workers"]["level"] == "crit"
    assert kpis["retry_exhausted"]["value"] == 1
    assert kpis["top_failure"]["value"] == "ValueError"
    assert {c["name"] for c in data["channels"]} == {"root", "exports"}
    assert data["top_failures_24h"] == [{"exc_name": "ValueError", "count": 1}]
    plain = cli("stats")
    assert "Queue health" in plain.output and "Failure rate 1 h" in plain.output


def test_init_creates_the_schema_and_other_commands_ask_for_it(tmp_path):
    from click.testing import CliRunner

    from job_worker.cli import main

    path = tmp_path / "fresh.db"
    url = f"sqlite:///{path}"
    runner = CliRunner()
    missing = runner.invoke(main, ["jobs", "list", "-d", url])
    assert missing.exit_code == 1 and "(`job-worker init` creates it)" in missing.output
    path.touch()
    empty = runner.invoke(main, ["jobs", "list", "-d", url])
    assert empty.exit_code == 1 and "run `job-worker init` first" in empty.output
    data = json.loads(runner.invoke(main, ["init", "-d", url, "--json"]).output)
    assert {"queue_job", "queue_limit", "queue_metric_snapshot", "queue_alert_rule"} <= set(
        data["tables"]
    )
    assert runner.invoke(main, ["jobs", "list", "-d", url]).exit_code == 0


def test_users_add_hashes_the_password_and_refuses_duplicates(cli, scenario, ops_registry):
    result = cli("users", "add", "dave", "--role", "manager", "--password", "correct horse")
    assert result.exit_code == 0, result.output
    with ops_registry.cursor() as cr:
        user = api.Environment(cr, SUPERUSER_ID, {})["res.users"].search([("login", "=", "dave")])
        assert user.password != "correct horse" and user.check_password("correct horse")
        assert user.has_group("queue_job.group_manager")
    assert cli("users", "add", "dave", "--password", "x").exit_code == 1
    prompted = cli("users", "add", "erin", input="pw-of-erin\npw-of-erin\n")
    assert prompted.exit_code == 0, prompted.output
    roles = {row["login"]: row["role"] for row in as_json(cli("users", "list", "--json"))}
    assert roles == {
        "alice": "manager",
        "bob": "user",
        "carol": "user",
        "dave": "manager",
        "erin": "user",
    }


def test_vacuum_deletes_finished_jobs_past_retention(cli, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        cr.execute(
            "UPDATE queue_job SET write_date = %s WHERE id = %s",
            [stats.now() - timedelta(days=40), scenario.done],
        )
    data = as_json(cli("vacuum", "--retention-days", "30", "--json"))
    assert data["jobs_deleted"] == 1 and data["reclaimed"] is True
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        assert not env["queue.job"].browse(scenario.done).exists()
        assert env["queue.job"].browse(scenario.failed).exists()

"""``job-worker config``: the cluster settings are set once in the database, and
``stats``, ``jobs explain``, ``limits list`` and ``vacuum`` all use that value."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.monitoring import stats
from job_worker.queue import states

pytestmark = pytest.mark.timeout(60)


@contextmanager
def committed(registry: Registry) -> Iterator[api.Environment]:
    with registry.cursor() as cr:
        yield api.Environment(cr, SUPERUSER_ID, {})


def as_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def add_worker(env: api.Environment, age: float, heartbeat_interval: float | None = None) -> None:
    moment = stats.now() - timedelta(seconds=age)
    env["queue.worker"].create(
        {
            "worker_id": f"host:1:{age}",
            "hostname": "host",
            "pid": 1,
            "concurrency": 2,
            "started_at": moment,
            "heartbeat": moment,
            "heartbeat_interval": heartbeat_interval,
        }
    )


def explain_codes(cli, job_id: int) -> list[str]:
    return [r["code"] for r in as_json(cli("jobs", "explain", str(job_id), "--json"))["reasons"]]


def test_default_limit_set_once_is_what_stats_limits_and_explain_use(cli, ops_registry):
    with committed(ops_registry) as env:
        partner = env["res.partner"].create({"name": "Acme"})
        running = partner.with_delay(channel="exports").export()
        states.mark_started(env.cr, running.id, "host:1:x")
        waiting = partner.with_delay(channel="exports").export().id
    assert "channel_full" in explain_codes(cli, waiting)  # the default: 1 at once

    assert cli("config", "set", "default_limit", "2").exit_code == 0

    limits = {row["channel"]: row for row in as_json(cli("limits", "list", "--json"))}
    assert (limits["exports"]["limit"], limits["exports"]["configured"]) == (2, "default")
    channels = {row["name"]: row for row in as_json(cli("stats", "--json"))["channels"]}
    assert channels["exports"]["limit"] == 2 and channels["exports"]["utilisation"] == 0.5
    assert "channel_full" not in explain_codes(cli, waiting)

    assert cli("config", "set", "default_limit", "0").exit_code == 0
    assert "channel_paused" in explain_codes(cli, waiting)
    assert as_json(cli("limits", "list", "--json"))[0]["limit"] == 0


def test_stale_window_set_once_is_what_stats_kpis_and_explain_use(cli, ops_registry):
    with committed(ops_registry) as env:
        add_worker(env, age=20)
        job = env["res.partner"].create({"name": "Acme"}).with_delay().export()
        states.mark_started(env.cr, job.id, "host:1:20")
        env.cr.execute(
            "UPDATE queue_job SET heartbeat = %s WHERE id = %s",
            [stats.now() - timedelta(seconds=20), job.id],
        )

    def figures() -> tuple[dict, list[dict]]:
        data = as_json(cli("stats", "--json"))
        return {k["key"]: k for k in data["kpis"]}, data["workers"]

    kpis, workers = figures()  # the default window: 30 s
    assert (kpis["active_workers"]["value"], kpis["stuck_jobs"]["value"]) == (1, 0)
    assert workers[0]["alive"] is True
    assert "stale_heartbeat" not in explain_codes(cli, job.id)

    assert cli("config", "set", "stale_seconds", "10").exit_code == 0

    kpis, workers = figures()
    assert (kpis["active_workers"]["value"], kpis["stuck_jobs"]["value"]) == (0, 1)
    assert kpis["stuck_jobs"]["hint"] == "started, no heartbeat for 10 s"
    assert kpis["active_workers"]["hint"] == "heartbeat within 10 s"
    assert workers[0]["alive"] is False
    assert "stale_heartbeat" in explain_codes(cli, job.id)
    listed = as_json(cli("jobs", "list", "--stuck", "--json"))
    assert [row["id"] for row in listed["jobs"]] == [job.id]


def test_list_get_and_unset_say_where_each_value_comes_from(cli, ops_registry):
    rows = {row["key"]: row for row in as_json(cli("config", "list", "--json"))}
    assert set(rows) == {
        "default_limit",
        "stale_seconds",
        "retention_days",
        "max_channel_backoffs",
    }
    assert all(row["source"] == "default" for row in rows.values())
    assert (rows["retention_days"]["value"], rows["stale_seconds"]["value"]) == ("30", "30")

    assert cli("config", "set", "retention_days", "Forever").exit_code == 0
    assert cli("config", "get", "retention_days").output == "forever\n"
    got = as_json(cli("config", "get", "retention_days", "--json"))
    assert (got["value"], got["source"], got["default"]) == ("forever", "database", "30")

    result = cli("config", "unset", "retention_days")
    assert result.exit_code == 0 and "the default" in result.output
    assert cli("config", "get", "retention_days").output == "30\n"
    assert as_json(cli("config", "unset", "retention_days", "--json"))["was_set"] is False


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("default_limit", "-1", "an integer >= 0"),
        ("default_limit", "2.5", "an integer >= 0"),
        ("stale_seconds", "0", "seconds > 0"),
        ("stale_seconds", "soon", "seconds > 0"),
        ("stale_seconds", "inf", "seconds > 0"),
        ("retention_days", "0", "an integer number of days >= 1, or 'forever'"),
        ("max_channel_backoffs", "0", "an integer >= 1"),
        ("max_channel_backoffs", "many", "an integer >= 1"),
        ("retention_days", "never", "an integer number of days >= 1, or 'forever'"),
        ("retention", "3", "one of default_limit, stale_seconds, retention_days"),
    ],
)
def test_bad_value_is_refused_in_one_line_naming_the_setting_and_changes_nothing(
    cli, ops_registry, key, value, accepted
):
    assert cli("config", "set", "default_limit", "3").exit_code == 0
    before = as_json(cli("config", "list", "--json"))
    result = cli("config", "set", key, value)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and key in lines[0] and accepted in lines[0]
    assert as_json(cli("config", "list", "--json")) == before


def test_stale_window_must_exceed_the_heartbeat_interval_of_every_live_worker(cli, ops_registry):
    with committed(ops_registry) as env:
        add_worker(env, age=1, heartbeat_interval=5)
        add_worker(env, age=3600, heartbeat_interval=60)  # long dead: does not count
    result = cli("config", "set", "stale_seconds", "5")
    assert result.exit_code == 2
    assert "a live worker sends a heartbeat every 5 s" in result.output
    assert cli("config", "get", "stale_seconds").output == "30\n"
    assert cli("config", "set", "stale_seconds", "6").exit_code == 0
    assert cli("config", "get", "stale_seconds").output == "6\n"


@pytest.mark.parametrize(
    ("args", "command"),
    [
        (["stats", "--default-limit", "3"], "config set default_limit 3"),
        (["limits", "list", "--default-limit", "3"], "config set default_limit 3"),
        (["jobs", "explain", "1", "--stale-seconds", "9"], "config set stale_seconds 9"),
        (["dashboard", "--default-limit", "3"], "config set default_limit 3"),
        (["worker", "--default-limit", "3"], "config set default_limit 3"),
        (["worker", "--stale-after", "9"], "config set stale_seconds 9"),
        (["worker", "--retention-days", "7"], "config set retention_days 7"),
    ],
)
def test_former_options_are_refused_with_the_command_that_sets_the_value(
    cli, ops_registry, args, command
):
    result = cli(*args)
    assert result.exit_code == 2
    assert "is no longer an option" in result.output and f"job-worker {command}" in result.output


def test_vacuum_applies_the_retention_setting(cli, ops_registry):
    with committed(ops_registry) as env:
        job = env["res.partner"].create({"name": "Acme"}).with_delay().export()
        env.cr.execute(
            "UPDATE queue_job SET state = 'done', write_date = %s WHERE id = %s",
            [stats.now() - timedelta(days=3), job.id],
        )
    vacuum = ("vacuum", "--no-reclaim", "--json")
    assert cli("config", "set", "retention_days", "forever").exit_code == 0
    assert as_json(cli(*vacuum))["jobs_deleted"] == 0
    assert cli("config", "set", "retention_days", "5").exit_code == 0
    assert as_json(cli(*vacuum))["jobs_deleted"] == 0
    assert cli("config", "set", "retention_days", "2").exit_code == 0
    result = as_json(cli(*vacuum))
    assert (result["jobs_deleted"], result["retention_days"]) == (1, 2)


def test_queue_config_rows_are_checked_whatever_writes_them(ops_registry):
    with committed(ops_registry) as env:
        Config = env["queue.config"]
        with pytest.raises(ValueError, match="default_limit: expected an integer >= 0"):
            Config.create({"key": "default_limit", "value": "-1"})
        with pytest.raises(ValueError, match="unknown setting 'limit'"):
            Config.create({"key": "limit", "value": "1"})
        row = Config.create({"key": "retention_days", "value": " FOREVER "})
        assert row.value == "forever"
        with pytest.raises(ValueError, match="retention_days: expected"):
            row.write({"value": "0.5"})
        with pytest.raises(ValueError, match="not renamed"):
            row.write({"key": "default_limit"})
        row.write({"value": "7"})
        assert Config.get_settings().retention_days == 7

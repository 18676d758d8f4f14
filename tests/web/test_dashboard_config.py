"""The dashboard reads the cluster settings from the database: the channels page, the
KPI cards, the workers page, the job list, the explanation and ``/metrics`` agree with
what ``job-worker config set`` stored, changed while the dashboard runs."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner

from job_worker import SUPERUSER_ID, api
from job_worker.cli import main
from job_worker.monitoring import stats
from job_worker.queue import states

pytestmark = pytest.mark.timeout(60)


def set_config(registry, key: str, value: str) -> None:
    with registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.config"].set_value(key, value)


@pytest.fixture
def silent_worker_job(ops_registry, scenario) -> int:
    """A worker and a job of channel ``reports`` (no queue.limit row) it started, both
    without a heartbeat for 20 s: alive and running under the default 30 s window."""
    moment = stats.now() - timedelta(seconds=20)
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.worker"].create(
            {"worker_id": "host:1:a", "hostname": "host", "pid": 1, "heartbeat": moment}
        )
        job = env["res.partner"].create({"name": "Acme"}).with_delay(channel="reports").export()
        states.mark_started(env.cr, job.id, "host:1:a")
        cr.execute("UPDATE queue_job SET heartbeat = %s WHERE id = %s", [moment, job.id])
        return job.id


def cards(client) -> dict[str, dict]:
    return {card["key"]: card for card in client.get("/api/overview").json()["cards"]}


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


def test_kpi_cards_workers_page_and_stuck_list_follow_the_stale_window(
    manager, ops_registry, silent_worker_job
):
    before = cards(manager)
    assert before["active_workers"]["display"] == "1"
    assert before["stuck_jobs"]["hint"] == "started, no heartbeat for 30 s"
    stuck_before = int(before["stuck_jobs"]["display"])

    set_config(ops_registry, "stale_seconds", "10")

    after = cards(manager)
    assert after["active_workers"]["display"] == "0"
    assert after["active_workers"]["hint"] == "heartbeat within 10 s"
    assert int(after["stuck_jobs"]["display"]) == stuck_before + 1
    assert after["stuck_jobs"]["hint"] == "started, no heartbeat for 10 s"
    workers = html.unescape(manager.get("/workers").text)
    assert "heartbeat is younger than 10 s" in workers
    stuck = manager.get(after["stuck_jobs"]["href"]).text
    assert f"/jobs/{silent_worker_job}" in stuck
    detail = html.unescape(manager.get(f"/jobs/{silent_worker_job}").text)
    assert "stale after 10 s" in detail
    assert metric(manager.get("/metrics").text, "job_worker_workers_alive") == 0


def test_channels_page_and_metrics_show_the_default_limit_set_in_the_database(
    manager, ops_registry, silent_worker_job
):
    limit = 'job_worker_channel_limit{channel="reports"}'
    assert metric(manager.get("/metrics").text, limit) == 1
    set_config(ops_registry, "default_limit", "4")
    page = html.unescape(manager.get("/channels").text)
    assert "A channel without a limit runs 4 job(s) at once" in page
    assert metric(manager.get("/metrics").text, limit) == 4
    assert metric(manager.get("/metrics").text, "job_worker_workers_alive") == 1


def test_dashboard_on_a_schema_without_the_settings_table_asks_for_init(ops_registry, db_url):
    with ops_registry.cursor() as cr:
        cr.execute("DROP TABLE queue_config")
    runner = CliRunner(env={"JOB_WORKER_DATABASE_URL": db_url, "JOB_WORKER_LOAD": "opsapp"})
    result = runner.invoke(main, ["dashboard", "--port", "0"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "(no table queue_config): run `job-worker init` to upgrade it" in result.output

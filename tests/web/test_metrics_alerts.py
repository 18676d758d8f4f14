"""Metric snapshots, Prometheus /metrics, alert rules and webhook delivery."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.monitoring import stats, webhooks
from job_worker.monitoring.models.snapshot import PERIODS, floor_time

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def webhook() -> Iterator[tuple[str, queue.Queue]]:
    """A test HTTP server on 127.0.0.1 that records the JSON bodies POSTed to it."""
    received: queue.Queue = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def dead_endpoint() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    sock.close()


def env_of(registry):
    cr = registry.cursor()
    return api.Environment(cr, SUPERUSER_ID, {})


def test_snapshot_counts_the_jobs_finished_in_the_last_interval(ops_registry, scenario, manager):
    now = stats.now()
    bucket = floor_time(now - timedelta(seconds=60), "5min") - PERIODS["5min"]
    with ops_registry.cursor() as cr:
        cr.execute(
            "UPDATE queue_job SET write_date = %s WHERE id IN (%s, %s)",
            [bucket + timedelta(minutes=1), scenario.done, scenario.failed],
        )
        counters = api.Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._run_maintenance({})
    assert counters["snapshots"] >= 1
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        (row,) = env["queue.metric.snapshot"]._series("5min", bucket)
        assert (row["bucket"], row["done_count"], row["failed_count"]) == (bucket, 1, 1)
        assert row["pending_count"] == 3 and row["running_count"] == 0
        assert env["queue.maintenance"]._run_maintenance({})["snapshots"] == 0  # taken once
    series = manager.get("/api/series?range=6h").json()["points"]
    assert [(p["done"], p["failed"]) for p in series if not p["live"]] == [(1, 1)]
    # the intervals after the snapshot are counted live: nothing finished there
    assert {(p["done"], p["failed"]) for p in series if p["live"]} == {(0, 0)}
    body = manager.get("/metrics").text
    assert 'job_worker_jobs_done_total{channel="root"} 1.0' in body
    assert 'job_worker_jobs_failed_total{channel="root"} 1.0' in body


def test_charts_count_the_jobs_finished_since_the_last_snapshot_live(
    ops_registry, scenario, manager
):
    with ops_registry.cursor() as cr:  # the snapshot of the interval before, taken first
        api.Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._run_maintenance({})
        api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(scenario.pending).run_now()
    points = manager.get("/api/series?range=24h").json()["points"]
    live = [p for p in points if p["live"]]
    assert live and points[-len(live) :] == live  # the live tail comes last
    assert live[-1]["t"] == floor_time(stats.now(), "5min").isoformat() + "Z"
    assert sum(p["done"] for p in live) == 2 and sum(p["failed"] for p in live) == 1
    assert live[-1]["p95"] is not None
    # hourly: roll-ups only (an hour that ended just before the maintenance is rolled up, but
    # holds none of these jobs: they finished after it)
    hourly = manager.get("/api/series?range=7d").json()["points"]
    assert not any(p["live"] for p in hourly)
    assert sum(p["done"] for p in hourly) == 0 and sum(p["failed"] for p in hourly) == 0


def test_charts_show_jobs_finished_while_no_worker_took_snapshots(ops_registry, scenario, manager):
    now = stats.now()
    with ops_registry.cursor() as cr:  # a snapshot an hour ago, then the jobs, then no worker
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.maintenance"]._run_maintenance({})
        cr.execute(
            "UPDATE queue_metric_snapshot SET bucket = %s",
            [floor_time(now, "5min") - timedelta(hours=1)],
        )
        cr.execute(
            "UPDATE queue_job SET write_date = %s WHERE id IN (%s, %s)",
            [now - timedelta(minutes=20), scenario.done, scenario.failed],
        )
    points = manager.get("/api/series?range=6h").json()["points"]
    live = [p for p in points if p["live"]]
    busy = floor_time(now - timedelta(minutes=20), "5min").isoformat() + "Z"
    assert [(p["done"], p["failed"]) for p in live if p["t"] == busy] == [(1, 1)]
    assert sum(p["done"] + p["failed"] for p in live) == 2
    assert len(live) == 12  # every 5 minutes since the snapshot, up to the current one
    assert manager.get("/api/series?range=6h&channel=exports").json()["points"][-1]["live"]


def test_metrics_need_no_login_and_add_the_live_tail(client_for, ops_registry, scenario):
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.maintenance"]._run_maintenance({})
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.job"].browse(scenario.pending).run_now()  # done now: after the snapshot
    body = client_for(None).get("/metrics").text
    assert 'job_worker_jobs{channel="root",state="pending"} 2.0' in body
    assert 'job_worker_jobs_done_total{channel="exports"} 1.0' in body
    values = dict(
        line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#")
    )
    done = sum(float(v) for k, v in values.items() if k.startswith("job_worker_jobs_done_total"))
    # every job done since the snapshot: the new one, and the scenario's if it ended in this interval
    assert float(values["job_worker_job_duration_seconds_count"]) == done >= 1
    assert float(values['job_worker_job_duration_seconds_bucket{le="+Inf"}']) == done
    assert "job_worker_workers_alive 0.0" in body
    assert all(line.startswith(("#", "job_worker_")) for line in body.splitlines() if line)


def test_roll_up_sums_counts_and_keeps_the_worst_p95(ops_registry, scenario):
    now = stats.now()
    hour = floor_time(now, "hour") - timedelta(hours=2)
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        Snapshot = env["queue.metric.snapshot"]
        Snapshot.create(
            [
                {
                    "period": "5min",
                    "bucket": hour + timedelta(minutes=5 * i),
                    "channel": "*",
                    "done_count": 10,
                    "failed_count": i % 2,
                    "duration_p95": 1.0 + i,
                    "duration_avg": 0.5,
                    "pending_count": i,
                }
                for i in range(12)
            ]
        )
        assert Snapshot._roll_up(now) >= 1
        cr.execute(
            "SELECT done_count, failed_count, duration_p95, duration_avg, pending_count"
            " FROM queue_metric_snapshot WHERE period = 'hour' AND bucket = %s AND channel = '*'",
            [hour],
        )
        assert cr.fetchone() == (120, 6, 12.0, 0.5, 11)
        Snapshot.create({"period": "5min", "bucket": now - timedelta(days=3), "channel": "*"})
        assert Snapshot._prune(now) == 1


def test_alert_fires_to_the_log_and_the_webhook_then_cools_down(
    ops_registry, scenario, webhook, caplog
):
    url, received = webhook
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        rule = env["queue.alert.rule"].create(
            {
                "name": "failures",
                "kind": "failed_count",
                "threshold": 0,
                "cooldown_minutes": 30,
                "webhook_url": url,
            }
        )
        fired = env["queue.alert.rule"]._evaluate(stats.now())
    assert [alert["rule"] for alert in fired] == ["failures"]
    payload = received.get(timeout=10)
    assert (payload["event"], payload["kind"], payload["value"], payload["threshold"]) == (
        "alert.fired",
        "failed_count",
        1.0,
        0.0,
    )
    assert any(getattr(r, "event", None) == "alert.fired" for r in caplog.records)
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        later = stats.now() + timedelta(minutes=5)
        assert env["queue.alert.rule"]._evaluate(later) == []  # still failing, within the cooldown
        assert env["queue.alert.rule"].browse(rule.id).state == "firing"
        env["queue.job"].browse(scenario.failed).requeue()
        env["queue.alert.rule"]._evaluate(later + timedelta(minutes=2))
        assert env["queue.alert.rule"].browse(rule.id).state == "ok"
    assert received.empty()


def test_alert_of_a_rolled_back_evaluation_notifies_nobody(ops_registry, scenario, webhook):
    url, received = webhook
    cr = ops_registry.cursor()
    try:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.alert.rule"].create(
            {"name": "depth", "kind": "queue_depth", "threshold": 1, "webhook_url": url}
        )
        assert len(env["queue.alert.rule"]._evaluate(stats.now())) == 1
        cr.rollback()
    finally:
        cr.close()
    assert webhooks.wait_idle(5)
    assert received.empty()


def test_dead_webhook_delays_nothing_else(ops_registry, scenario, webhook, dead_endpoint):
    url, received = webhook
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.alert.rule"].create(
            [
                {
                    "name": "dead",
                    "kind": "failed_count",
                    "threshold": 0,
                    "webhook_url": dead_endpoint,
                },
                {"name": "alive", "kind": "failed_count", "threshold": 0, "webhook_url": url},
            ]
        )
        started = time.monotonic()
        counters = env["queue.maintenance"]._run_maintenance({})
        assert counters["alerts_fired"] == 2
    assert time.monotonic() - started < webhooks.TIMEOUT  # nothing waited on the network
    assert received.get(timeout=10)["rule"] == "alive"  # delivered while the dead one hangs


def test_alert_rule_values_are_checked(ops_registry):
    with ops_registry.cursor() as cr:
        Rule = api.Environment(cr, SUPERUSER_ID, {})["queue.alert.rule"]
        with pytest.raises(ValueError, match="kind must be one of"):
            Rule.create({"name": "x", "kind": "vibes", "threshold": 1})
        with pytest.raises(ValueError, match="webhook_url must be an http"):
            Rule.create({"name": "x", "kind": "queue_depth", "webhook_url": "file:///etc/passwd"})
        with pytest.raises(ValueError, match="threshold must be a number >= 0"):
            Rule.create({"name": "x", "kind": "queue_depth", "threshold": -3})


def test_manager_creates_and_evaluates_a_rule_in_the_dashboard(manager, scenario, webhook):
    from opsapp.scenario import csrf_of

    url, received = webhook
    token = csrf_of(manager.get("/alerts").text)
    manager.post(
        "/alerts",
        data={
            "name": "Too many failures",
            "kind": "failed_count",
            "threshold": "0",
            "window_minutes": "60",
            "cooldown_minutes": "10",
            "webhook_url": url,
            "active": "1",
            "csrf_token": token,
        },
    )
    page = manager.get("/alerts")
    assert "Too many failures" in page.text
    rule_id = int(page.text.split('action="/alerts/')[1].split('"')[0])
    manager.post(f"/alerts/{rule_id}", data={"evaluate": "1", "csrf_token": token})
    assert "value 1, fired" in manager.get("/alerts").text
    assert received.get(timeout=10)["rule"] == "Too many failures"


def test_metrics_show_each_periodic_jobs_lag_and_counters(client_for, ops_registry):
    late = stats.now() - timedelta(seconds=30)
    with ops_registry.cursor() as cr:
        crons = api.Environment(cr, SUPERUSER_ID, {})["queue.cron"]
        due = crons.create(
            {
                "name": "late export",
                "model_name": "res.partner",
                "method_name": "export",
                "interval": 60,
                "next_at": late,
            }
        )
        due._fire(late)  # enqueued the occurrence of `late`; the next is 30 s ahead
        due._store({"next_at": late, "skipped_count": 2})  # now 30 s late again
        due.run_now()
        crons.create(
            {
                "name": "paused",
                "model_name": "res.partner",
                "method_name": "export",
                "interval": 60,
                "active": False,
            }
        )
    body = client_for(None).get("/metrics").text
    values = dict(
        line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#")
    )
    label = f'{{cron="late export",cron_id="{due.id}"}}'
    assert 29 <= float(values[f"job_worker_cron_lag_seconds{label}"]) < 60
    assert float(values[f"job_worker_cron_jobs_enqueued_total{label}"]) == 2
    assert float(values[f"job_worker_cron_occurrences_skipped_total{label}"]) == 2
    assert not any(k.startswith('job_worker_cron_lag_seconds{cron="paused"') for k in values)

"""The channels page and /metrics show a channel's bounded depth; managers set it."""

from __future__ import annotations

from opsapp.scenario import csrf_of

from job_worker import SUPERUSER_ID, api


def _limit(ops_registry):
    with ops_registry.cursor() as cr:
        return (
            api.Environment(cr, SUPERUSER_ID, {})["queue.limit"]
            .search([("name", "=", "exports")])
            .read(["limit", "max_depth", "depth_policy", "skipped"])
        )


def test_manager_sets_max_depth_and_policy_on_the_channels_page(manager, scenario, ops_registry):
    page = manager.get("/channels")
    assert 'name="max_depth"' in page.text and 'name="depth_policy"' in page.text
    token = csrf_of(page.text)
    saved = manager.post(
        "/channels",
        data={
            "name": "exports",
            "limit": "2",
            "rate_limit": "0",
            "max_depth": "1",
            "depth_policy": "skip",
            "csrf_token": token,
        },
    )
    assert saved.status_code == 303
    page = manager.get("/channels").text
    assert "max depth 1 (skip when full)" in page
    assert "1 of 1" in page and "full</span>" in page  # the scenario's pending export
    [row] = _limit(ops_registry)
    assert (row["limit"], row["max_depth"], row["depth_policy"]) == (2, 1, "skip")


def test_bad_depth_fields_flash_an_error_and_write_nothing(manager, scenario, ops_registry):
    token = csrf_of(manager.get("/channels").text)
    for field, value, words in (
        ("max_depth", "-3", "max depth must be a whole number"),
        ("max_depth", "lots", "max depth must be a whole number"),
        ("depth_policy", "drop", "depth policy must be one of raise, skip, got &#39;drop&#39;"),
    ):
        data = {"name": "exports", "limit": "2", "csrf_token": token, field: value}
        assert manager.post("/channels", data=data).status_code == 303
        assert words in manager.get("/channels").text
    assert _limit(ops_registry) == []


def test_metrics_expose_max_depth_and_skipped(client_for, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.limit"].set_limit("exports", 2, max_depth=1, depth_policy="skip")
        partner = env["res.partner"].search([], limit=1)
        assert not partner.with_delay(channel="exports").export("pdf")
    body = client_for(None).get("/metrics").text
    assert 'job_worker_channel_max_depth{channel="exports"} 1.0' in body
    assert 'job_worker_channel_skipped_total{channel="exports"} 1.0' in body


def test_the_job_page_shows_weight_and_fair_key(manager, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.limit"].set_limit("exports", 4)
        partner = env["res.partner"].search([], limit=1)
        job = partner.with_delay(channel="exports", weight=3, fair_key="tenant-42").export("pdf")
    page = manager.get(f"/jobs/{job.id}").text
    assert "<th>Weight</th><td>3</td>" in page and "tenant-42" in page

"""The dashboard in a real browser (Chromium driven by Playwright) against a real
server on 127.0.0.1, with a real worker running the requeued job.

Set ``JOB_WORKER_SCREENSHOTS=<folder>`` to keep screenshots of the main pages
(``docs/screenshots`` is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opsapp.scenario import PASSWORD, Scenario, populate_database

from job_worker import SUPERUSER_ID, Registry, api
from job_worker.web import Settings, create_app

pytestmark = pytest.mark.timeout(150)

CHROMIUM = os.environ.get("JOB_WORKER_CHROMIUM", "/usr/bin/chromium")
APPS = str(Path(__file__).resolve().parents[1] / "apps")

# CI sets JOB_WORKER_REQUIRE_BROWSER: there a missing browser fails instead of skipping
REQUIRE_BROWSER = os.environ.get("JOB_WORKER_REQUIRE_BROWSER", "") not in ("", "0")

if REQUIRE_BROWSER:
    import playwright.sync_api as playwright_sync
else:
    playwright_sync = pytest.importorskip("playwright.sync_api")
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    if REQUIRE_BROWSER:
        pytest.fail(f"no Chromium at {CHROMIUM} (JOB_WORKER_REQUIRE_BROWSER is set)", pytrace=False)
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)


@pytest.fixture
def site(tmp_path) -> Iterator[tuple[str, Registry, Scenario, str]]:
    """A dashboard served by uvicorn on 127.0.0.1 (free port) over a populated SQLite file."""
    import uvicorn

    url = f"sqlite:///{tmp_path / 'browser.db'}"
    registry = Registry(url, ["opsapp"])
    scenario = populate_database(registry)
    app = create_app(registry, Settings(secret="browser-test-secret-0123", refresh_seconds=0.5))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)  # uvicorn has no start callback: check its flag
    assert server.started, "the dashboard did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", registry, scenario, url
    server.should_exit = True
    thread.join(timeout=10)
    registry.close()


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def shoot(page, name: str) -> None:
    folder = os.environ.get("JOB_WORKER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def log_in(page, base: str, login: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def start_worker(url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([APPS, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "job_worker",
            "worker",
            "-d",
            url,
            "-l",
            "opsapp",
            "--poll-interval",
            "0.2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_manager_finds_a_failed_job_reads_its_traceback_requeues_it_and_sees_it_done(site, browser):
    base, registry, scenario, url = site
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    log_in(page, base, "alice")
    failed_card = page.locator(".card[data-key=failed_jobs]")
    assert failed_card.locator(".value").inner_text() == "1"
    assert "warn" in failed_card.get_attribute("class")
    shoot(page, "overview")

    failed_card.click()
    page.wait_for_url(f"{base}/jobs?state=failed")
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == 1
    shoot(page, "jobs")
    rows.first.locator("a", has_text="Push to ERP").click()
    page.wait_for_url(f"{base}/jobs/{scenario.failed}")
    assert (
        "ValueError: export target refused the file" in page.locator("pre.traceback").inner_text()
    )
    shoot(page, "job-failed")

    with registry.cursor() as cr:  # the operator fixes the cause, then requeues
        api.Environment(cr, SUPERUSER_ID, {})["res.partner"].browse(1).write({"erp_ready": True})
    page.click("button[value=requeue]")
    page.wait_for_selector("[data-job-state]:has-text('pending')")
    assert "Requeue: 1 job(s)" in page.locator(".flash").inner_text()
    worker = start_worker(url)
    try:
        # the page follows the job by itself (live refresh) until the worker has run it
        page.wait_for_selector("[data-job-state]:has-text('done')", timeout=60_000)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=40)
    assert '"pushed": 1' in page.locator("pre.code").last.inner_text()

    page.goto(f"{base}/jobs/{scenario.chain_second}")
    page.wait_for_selector(".graph svg .node")
    assert page.locator(".graph svg .node").count() == 2
    shoot(page, "job-graph")
    for name in ("channels", "workers", "charts", "alerts"):
        page.goto(f"{base}/{name}")
        shoot(page, name)


def test_user_sees_only_own_jobs_and_cannot_edit_limits(site, browser):
    base, _registry, scenario, _url = site
    page = browser.new_page()
    log_in(page, base, "bob")
    page.goto(f"{base}/jobs")
    listed = page.locator("table.jobs").inner_text()
    assert "Push to ERP" in listed and "Carol's export" not in listed
    response = page.goto(f"{base}/jobs/{scenario.carol_pending}")
    assert response.status == 404
    page.goto(f"{base}/channels")
    assert page.locator("form.limit-form").count() == 0
    status = page.evaluate(
        """async () => {
            const token = document.querySelector('meta[name=csrf-token]').content;
            const body = new URLSearchParams({name: 'root', limit: '9', csrf_token: token});
            return (await fetch('/channels', {method: 'POST', body})).status;
        }"""
    )
    assert status == 403


def test_action_without_csrf_token_is_refused(site, browser):
    base, _registry, scenario, _url = site
    page = browser.new_page()
    log_in(page, base, "alice")
    page.goto(f"{base}/jobs/{scenario.failed}")
    status = page.evaluate(
        f"""async () => {{
            const body = new URLSearchParams({{action: 'requeue'}});
            return (await fetch('/jobs/{scenario.failed}/action', {{method: 'POST', body}})).status;
        }}"""
    )
    assert status == 403
    assert (
        page.evaluate(
            f"fetch('/api/jobs/{scenario.failed}').then(r => r.json()).then(j => j.state)"
        )
        == "failed"
    )


LONG_EXC = "opsapp.errors.PartnerSynchronisationRefusedByTheRemoteSystemError"


def test_charts_show_the_latest_jobs_with_readable_axes_and_a_long_failure_name_fits_its_card(
    site, browser
):
    base, registry, _scenario, _url = site
    with registry.cursor() as cr:  # the top failure type has a long name
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].search([], limit=1)
        jobs = [partner.with_delay(description="Sync").export() for _ in range(2)]
        cr.execute(
            "UPDATE queue_job SET state = 'failed', exc_name = %s, completed_at = write_date"
            " WHERE id IN (%s, %s)",
            [LONG_EXC, jobs[0].id, jobs[1].id],
        )
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    log_in(page, base, "alice")
    card = page.locator(".card[data-key=top_failure]")
    value = card.locator(".value")
    assert value.inner_text() == "PartnerSynchronisationRefusedByTheRemoteSystemError"
    assert value.get_attribute("title") == LONG_EXC
    card_box, value_box = card.bounding_box(), value.bounding_box()
    assert value_box["x"] + value_box["width"] <= card_box["x"] + card_box["width"]
    assert value_box["height"] < 45  # one line, shortened with an ellipsis, not broken up
    page.wait_for_selector("[data-updated]:has-text('Updated')")
    updated = page.locator("[data-updated]").inner_text()
    assert re.fullmatch(r"Updated \d\d:\d\d:\d\d UTC\.", updated), updated

    # no snapshot was taken yet: the jobs finished minutes ago are counted live
    page.goto(f"{base}/charts")
    page.wait_for_selector("[data-chart=done] svg rect")
    for chart in ("done", "failed", "p95", "wait"):
        box = page.locator(f"[data-chart={chart}]")
        ticks = box.locator("text.tick").all_text_contents()
        assert ticks and all(re.fullmatch(r"0|[\d,.]+( µs| ms| s)?", t) for t in ticks), ticks
        dates = box.locator("text.date").all_text_contents()
        assert dates and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d( UTC)?", d) for d in dates)
    assert page.locator("[data-chart=done] .tick").first.text_content() == "0"
    page.goto(f"{base}/charts?range=7d")  # hourly points come from roll-ups: none yet
    page.wait_for_selector("[data-chart=done] text.empty")
    assert (
        page.locator("[data-chart=done] text.empty").text_content() == "no data in this range yet"
    )
    assert page.locator("[data-chart] text.tick").count() == 0

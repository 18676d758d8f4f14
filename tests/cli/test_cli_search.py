"""``job-worker jobs list -q``: a bounded text search says how far it looked."""

from __future__ import annotations

import json

import pytest

from job_worker.monitoring import joblist

pytestmark = pytest.mark.timeout(60)


def test_jobs_list_search_says_how_far_it_looked(cli, scenario, monkeypatch):
    monkeypatch.setattr(joblist, "SEARCH_WINDOW", 3)
    result = cli("jobs", "list", "-q", "nothing-has-this")
    assert result.exit_code == 0, result.output
    assert "no jobs match" in result.output
    assert "searched jobs #" in result.output and "3 ids at most per page" in result.output
    data = json.loads(cli("jobs", "list", "--json", "-q", "nothing-has-this").output)
    low, high = data["searched"]
    assert high - low == 2 and data["jobs"] == []
    assert data["next_before"] == low  # the scenario has older jobs than the window
    assert f"older jobs: add --before {low}" in result.output
    by_id = json.loads(cli("jobs", "list", "--json", "-q", f"#{scenario.failed}").output)
    assert [job["id"] for job in by_id["jobs"]] == [scenario.failed] and by_id["searched"] is None

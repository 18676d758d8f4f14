"""``limits set --rate`` with rate windows, ``limits list`` (rates, running weight),
``limits fair`` and ``jobs explain``'s ``fair_turn`` (both databases)."""

from __future__ import annotations

import json

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.db.jobstore import job_store
from job_worker.queue import states
from job_worker.queue.explain import explain

pytestmark = pytest.mark.timeout(60)


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _limit(ops_registry) -> list[dict]:
    with ops_registry.cursor() as cr:
        return (
            api.Environment(cr, SUPERUSER_ID, {})["queue.limit"]
            .search([("name", "=", "exports")])
            .read(["limit", "rate_limit", "rates"])
        )


def _row(cli) -> dict:
    rows = as_json(cli("limits", "list", "--json"))
    return next(row for row in rows if row["channel"] == "exports")  # type: ignore[union-attr]


def enqueue(ops_registry, *keys: str, weight: int = 1, priority: int = 10) -> list[int]:
    """One job of channel exports per key ('' = no key), committed; their ids."""
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].search([], limit=1)
        return [
            partner.with_delay(
                channel="exports", fair_key=key or None, weight=weight, priority=priority
            )
            .export()
            .id
            for key in keys
        ]


def claim_one(ops_registry) -> list[int]:
    """What one claim of one job of channel exports starts (as a worker's supervisor)."""
    with ops_registry.cursor() as cr:
        claimed = job_store(cr.backend).claim(
            cr, worker_id="w1", wanted=1, default_limit=50, channels=["exports"]
        )
        return [job.id for job in claimed.jobs]


def test_limits_set_takes_several_rate_windows_and_list_shows_them(cli, scenario, ops_registry):
    result = cli("limits", "set", "exports", "4", "--rate", "500/min", "--rate", "10/s")
    assert result.exit_code == 0, result.output
    assert "channel exports: limit 4, rates 10/s 500/min" in result.output
    assert _limit(ops_registry)[0]["rates"] == "10/s 500/min"
    # a plain number keeps its old meaning and leaves the windows alone
    data = as_json(cli("limits", "set", "exports", "4", "--rate", "2", "--json"))
    assert (data["rate_limit"], data["rates"]) == (2.0, "10/s 500/min")
    text = cli("limits", "list").output
    assert "running_weight" in text and "10/s 500/min, 2/s spaced" in text
    row = _row(cli)
    assert (row["rates"], row["rate_limit"], row["running_weight"]) == ("10/s 500/min", 2.0, 0)
    # no --rate keeps both; new windows replace the old ones
    assert as_json(cli("limits", "set", "exports", "5", "--json"))["rates"] == "10/s 500/min"
    data = as_json(cli("limits", "set", "exports", "5", "--rate", "20000/h", "--json"))
    assert (data["rates"], data["rate_limit"]) == ("20000/h", 2.0)
    # --rate 0 clears both
    data = as_json(cli("limits", "set", "exports", "5", "--rate", "0", "--json"))
    assert (data["rates"], data["rate_limit"]) == ("", 0.0)


def test_limits_set_refuses_bad_rates_and_writes_nothing(cli, scenario, ops_registry):
    assert cli("limits", "set", "exports", "3", "--rate", "10/s").exit_code == 0
    for values, words in (
        (("x",), "'x' is not a rate"),
        (("0/s",), "the count must be from 1"),
        (("10/2d",), "'10/2d' is not a window"),
        (("5/25h",), "the period must be above 0 and at most 24 h"),
        (("-1",), "'-1' is not a rate"),
        (("nan",), "'nan' is not a rate"),
        (("1", "2"), "at most one plain number of starts per second, got 1, 2"),
        (tuple(f"1/{n}s" for n in range(1, 10)), "at most 8 rate windows"),
    ):
        args = [part for value in values for part in ("--rate", value)]
        result = cli("limits", "set", "exports", "7", *args)
        assert result.exit_code == 2, result.output
        assert "--rate" in result.output and words in result.output, result.output
    assert _limit(ops_registry) == [
        {"id": _limit(ops_registry)[0]["id"], "limit": 3, "rate_limit": 0.0, "rates": "10/s"}
    ]


def test_limits_list_shows_the_running_weight(cli, scenario, ops_registry):
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.limit"].set_limit("exports", 10)
    heavy, light = enqueue(ops_registry, "", "", weight=4)[0], enqueue(ops_registry, "")[0]
    with ops_registry.cursor() as cr:
        states.mark_started(cr, heavy, "host:1:x")
        states.mark_started(cr, light, "host:1:x")
    row = _row(cli)
    assert (row["running"], row["running_weight"]) == (2, 5)


def test_limits_fair_sets_weights_and_lists_keys_with_work(cli, scenario, ops_registry):
    enqueue(ops_registry, "tenant-1", "tenant-2", "tenant-2", "")
    result = cli("limits", "fair", "exports", "tenant-2", "3")
    assert result.exit_code == 0 and "fair key 'tenant-2' has 3 turns per round" in result.output
    assert cli("limits", "fair", "exports", "idle", "2").exit_code == 0
    data = as_json(cli("limits", "fair", "exports", "--json"))
    assert data["keys"] == [
        {"key": "", "pending": 2, "capped": False},  # the scenario's export has no key
        {"key": "tenant-1", "pending": 1, "capped": False},
        {"key": "tenant-2", "pending": 2, "capped": False},
    ]
    assert data["weights"] == {"idle": 2, "tenant-2": 3}
    assert (data["more_keys"], data["last_turn"]) == (False, None)
    text = cli("limits", "fair", "exports").output
    assert "(jobs without a key)" in text and "idle" in text
    assert "no key has had a turn yet" in text

    assert claim_one(ops_registry) == [scenario.pending]  # priority 5 first, without a key
    last = cli("limits", "fair", "exports").output
    assert "last turn: (jobs without a key) (its turn is over)" in last
    claim_one(ops_registry)  # at priority 10, tenant-1 comes after ''
    assert as_json(cli("limits", "fair", "exports", "--json"))["last_turn"] == "tenant-1"
    assert "last turn: tenant-1 (its turn is over)" in cli("limits", "fair", "exports").output

    # weight 1 removes the row
    assert cli("limits", "fair", "exports", "idle", "1").exit_code == 0
    assert as_json(cli("limits", "fair", "exports", "--json"))["weights"] == {"tenant-2": 3}


def test_limits_fair_refuses_bad_input_and_writes_nothing(cli, scenario):
    for args, words in (
        (("exports", "tenant-1"), "give KEY and WEIGHT together"),
        (("exports", "tenant-1", "0"), "0 is not in the range"),
        (("exports", "tenant-1", "heavy"), "'heavy' is not a valid integer"),
        (("exports", "", "2"), "fair_key must be a text of 1 to 200 characters"),
        (("bad channel", "tenant-1", "2"), "channel must be a channel name"),
    ):
        result = cli("limits", "fair", *args)
        assert result.exit_code == 2, result.output
        assert words in result.output, result.output
    assert as_json(cli("limits", "fair", "exports", "--json"))["weights"] == {}


def test_limits_fair_counts_with_a_bound(cli, scenario, ops_registry, monkeypatch):
    from job_worker.monitoring import stats

    enqueue(ops_registry, "a", "b", "c", "c", "c")
    monkeypatch.setattr(stats, "FAIR_KEYS_SHOWN", 2)
    monkeypatch.setattr(stats, "FAIR_PENDING_CAP", 2)
    monkeypatch.setattr(stats.fair_keys, "__defaults__", (2, 2))
    data = as_json(cli("limits", "fair", "exports", "--json"))
    assert [key["key"] for key in data["keys"]] == ["", "a"] and data["more_keys"] is True
    text = cli("limits", "fair", "exports").output
    assert "+ more keys with pending jobs (the first 2 are shown)" in text


def fair_turn(env, job_id: int):
    found = [r for r in explain(env, job_id) if r.code == "fair_turn"]
    return found[0] if found else None


def test_explain_fair_turn_counts_the_keys_the_claims_serve_first(scenario, ops_registry):
    # mixed case and non-ASCII keys: the count follows the database's order of keys
    keys = ["tenant-9", "B", "a", "tenant-10", "é", "", "Z-1"]
    ids = dict(zip(enqueue(ops_registry, *keys), keys, strict=True))
    with ops_registry.cursor() as cr:  # the scenario's keyless export would take a turn too
        api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(scenario.pending).cancel()
    first = claim_one(ops_registry) + claim_one(ops_registry)  # the cursor moves on
    pending = [job_id for job_id in ids if job_id not in first]
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        ahead = {}
        for job_id in pending:
            reason = fair_turn(env, job_id)
            ahead[job_id] = reason.details["keys_ahead"] if reason else 0
    order = [job_id for _ in pending for job_id in claim_one(ops_registry)]
    assert sorted(order) == sorted(pending)
    assert [ahead[job_id] for job_id in order] == list(range(len(pending)))


def test_explain_fair_turn_says_the_keys_and_the_jobs_of_its_own_key(cli, scenario, ops_registry):
    [a1, b1, _b2, b3, none] = enqueue(
        ops_registry, "tenant-a", "tenant-b", "tenant-b", "tenant-b", ""
    )
    reasons = as_json(cli("jobs", "explain", str(b3), "--json"))["reasons"]  # type: ignore[index]
    [turn] = [r for r in reasons if r["code"] == "fair_turn"]
    assert turn["message"] == (
        "tenant-b waits its turn behind 1 key and 2 jobs of its own key in channel 'exports'"
        " (fair share at priority 10)"
    )
    assert (turn["keys_ahead"], turn["jobs_ahead"], turn["last_turn"]) == (1, 2, None)
    # the scenario's keyless export (priority 5) comes first: a better priority, not a turn
    queued = [r for r in reasons if r["code"] == "queued_behind"]
    assert queued and queued[0]["message"].startswith("1 due job(s) of channel 'exports'")
    text = cli("jobs", "explain", str(none)).output
    assert "jobs without a key wait their turn behind 2 keys in channel 'exports'" in text
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        assert fair_turn(env, a1) is None  # it has the next turn
        b1_turn = fair_turn(env, b1)
        assert b1_turn is not None and b1_turn.message.startswith(
            "tenant-b waits its turn behind 1 key in"
        )


def test_explain_has_no_fair_turn_without_keyed_jobs(cli, scenario, ops_registry):
    [_first, second] = enqueue(ops_registry, "", "")
    reasons = as_json(cli("jobs", "explain", str(second), "--json"))["reasons"]  # type: ignore[index]
    assert "fair_turn" not in [r["code"] for r in reasons]
    behind = [r for r in reasons if r["code"] == "queued_behind"]
    assert behind and behind[0]["ahead"] == 2  # the scenario's export and the first


def test_explain_channel_full_tells_the_weights(scenario, ops_registry):
    with ops_registry.cursor() as cr:
        api.Environment(cr, SUPERUSER_ID, {})["queue.limit"].set_limit("exports", 10)
    running = enqueue(ops_registry, "", weight=7)[0]
    with ops_registry.cursor() as cr:
        states.mark_started(cr, running, "host:1:x")
    job = enqueue(ops_registry, "", weight=4)[0]
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        [full] = [r for r in explain(env, job) if r.code == "channel_full"]
    assert full.message == (
        f"channel 'exports' is at its limit: running jobs weigh 7 of 10, this one 4"
        f" (its queue.limit); running: {running}"
    )

"""``limits set --max-depth/--depth-policy``, ``limits list`` and ``enqueue
--weight/--fair-key`` against a bounded channel."""

from __future__ import annotations

import json

from job_worker import SUPERUSER_ID, api


def as_json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _exports(cli) -> dict:
    rows = as_json(cli("limits", "list", "--json"))
    return next(row for row in rows if row["channel"] == "exports")  # type: ignore[union-attr]


def test_limits_set_bounds_the_depth_and_list_shows_it(cli, scenario):
    result = cli("limits", "set", "exports", "3", "--max-depth", "1", "--depth-policy", "skip")
    assert result.exit_code == 0, result.output
    assert "at most 1 waiting or pending (skip when full)" in result.output
    row = _exports(cli)
    assert (row["max_depth"], row["depth"], row["depth_policy"], row["skipped"]) == (
        1,
        1,
        "skip",
        0,
    )
    text = cli("limits", "list").output
    assert "max_depth" in text and "skip" in text
    # the scenario's pending export fills it: the enqueue is skipped and counted
    skipped = cli("enqueue", "res.partner", "export", "--ids", "1", "--channel", "exports")
    assert skipped.exit_code == 1 and "enqueue was skipped" in skipped.output
    assert _exports(cli)["skipped"] == 1
    # raise (the default policy) refuses it
    assert cli("limits", "set", "exports", "3", "--depth-policy", "raise").exit_code == 0
    refused = cli("enqueue", "res.partner", "export", "--ids", "1", "--channel", "exports")
    assert refused.exit_code == 1 and "channel exports is full: 1 of 1" in refused.output
    assert _exports(cli)["depth"] == 1


def test_limits_set_refuses_bad_depth_options_and_writes_nothing(cli, scenario):
    for args in (
        ("--max-depth", "-1"),
        ("--max-depth", "x"),
        ("--max-depth", "99999999999"),
        ("--depth-policy", "drop"),
    ):
        result = cli("limits", "set", "exports", "3", *args)
        assert result.exit_code == 2, result.output
        assert args[0] in result.output
    assert _exports(cli)["configured"] == "default"


def test_enqueue_takes_weight_and_fair_key(cli, scenario, ops_registry):
    assert cli("limits", "set", "exports", "4").exit_code == 0
    data = as_json(
        cli(
            "enqueue", "res.partner", "export", "--ids", "1", "--channel", "exports",
            "--weight", "3", "--fair-key", "tenant-42", "--json",
        )
    )  # fmt: skip
    with ops_registry.cursor() as cr:
        job = api.Environment(cr, SUPERUSER_ID, {})["queue.job"].browse(data["id"])
        assert (job.weight, job.fair_key) == (3, "tenant-42")
    shown = cli("jobs", "show", str(data["id"]))
    assert "weight" in shown.output and "tenant-42" in shown.output
    heavy = cli("enqueue", "res.partner", "export", "--channel", "exports", "--weight", "5")
    assert heavy.exit_code == 2 and "weight 5 never fits in channel exports's limit 4" in (
        heavy.output
    )
    for bad in (("--weight", "0"), ("--weight", "x"), ("--fair-key", "")):
        result = cli("enqueue", "res.partner", "export", "--channel", "exports", *bad)
        assert result.exit_code == 2, result.output

"""Enqueue-time channel rules (PRODUCT.md 12): the weight and fair_key options, a
job too heavy for its channel, and bounded depth (max_depth) with its two policies."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from job_worker import SUPERUSER_ID, api
from job_worker.delay import chain, group
from job_worker.exceptions import ChannelFullError
from job_worker.orm.fields import INT_MAX
from job_worker.queue.explain import explain


@pytest.fixture
def partner(qenv):
    qenv["queue.limit"].set_limit("root", 10)  # room for the weights of these tests
    return qenv["res.partner"].create({"name": "Acme"})


def _depth(env, channel):
    return env["queue.job"].search_count(
        [("channel", "=", channel), ("state", "in", ["waiting", "pending"])]
    )


# -- the options -------------------------------------------------------------------


def test_weight_and_fair_key_are_stored_on_the_job(qenv, partner):
    job = partner.with_delay(weight=3, fair_key="tenant-42").record("x")
    assert (job.weight, job.fair_key) == (3, "tenant-42")
    plain = partner.with_delay().record("y")
    assert (plain.weight, plain.fair_key) == (1, "")  # no key
    delayed = partner.delayable(weight=2).record("z").set(fair_key="t").delay()
    assert (delayed.weight, delayed.fair_key) == (2, "t")
    direct = qenv["queue.job"].enqueue(
        "res.partner", "record", [partner.id], weight=4, fair_key="k"
    )
    assert (direct.weight, direct.fair_key) == (4, "k")


def test_graph_jobs_keep_their_weight_and_fair_key(qenv, partner):
    jobs = group(
        partner.delayable(weight=2, fair_key="a").record("1"),
        partner.delayable(fair_key="b").record("2"),
    ).delay()
    assert sorted((j.weight, j.fair_key) for j in jobs) == [(1, "b"), (2, "a")]


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"weight": 0}, ValueError, "weight must be an int from 1"),
        ({"weight": -5}, ValueError, "got -5"),
        ({"weight": INT_MAX + 1}, ValueError, str(INT_MAX)),
        ({"weight": True}, TypeError, "weight must be an int"),
        ({"weight": 2.0}, TypeError, "got 2.0"),
        ({"weight": "3"}, TypeError, "weight"),
        ({"weight": None}, TypeError, "weight"),
        ({"fair_key": ""}, ValueError, "fair_key must be None or a string of 1 to 200"),
        ({"fair_key": "k" * 201}, ValueError, "201 characters"),
        ({"fair_key": "a\x00b"}, ValueError, "fair_key"),
        ({"fair_key": "\ud800"}, ValueError, "cannot be stored"),
        ({"fair_key": 42}, TypeError, "fair_key must be None or a string"),
        ({"fair_key": b"bytes"}, TypeError, "fair_key"),
    ],
)
def test_bad_weight_or_fair_key_is_refused_and_nothing_is_written(
    qenv, partner, options, error, words
):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(".", r"\.")):
        partner.with_delay(**options).record()
    with pytest.raises(error):
        partner.delayable().record().set(**options)
    with pytest.raises(error):
        qenv["queue.job"].enqueue("res.partner", "record", [partner.id], **options)
    assert qenv["queue.job"].search_count([]) == 0


def test_the_longest_fair_key_is_accepted(qenv, partner):
    assert partner.with_delay(fair_key="é" * 200).record().fair_key == "é" * 200


# -- weight against the channel's limit ----------------------------------------------


def test_a_job_heavier_than_its_channel_limit_is_refused(qenv, partner):
    qenv["queue.limit"].set_limit("video", 5)
    with pytest.raises(ValueError, match="weight 8 never fits in channel video's limit 5"):
        partner.with_delay(channel="video", weight=8).record()
    assert partner.with_delay(channel="video", weight=5).record().weight == 5
    assert qenv["queue.job"].search_count([]) == 1


def test_without_a_limit_row_the_default_limit_counts(qenv, partner):
    with pytest.raises(ValueError, match="weight 2 never fits in channel plain's limit 1"):
        partner.with_delay(channel="plain", weight=2).record()
    qenv["queue.config"].set_value("default_limit", 4)
    assert partner.with_delay(channel="plain", weight=4).record().weight == 4


def test_a_paused_channel_refuses_no_weight(qenv, partner):
    qenv["queue.limit"].set_limit("video", 0)
    assert partner.with_delay(channel="video", weight=50).record().weight == 50


def test_a_heavy_job_in_a_graph_refuses_the_whole_graph(qenv, partner):
    qenv["queue.limit"].set_limit("video", 2)
    graph = chain(
        partner.delayable(channel="other").record("a"),
        partner.delayable(channel="video", weight=3).record("b"),
    )
    with pytest.raises(ValueError, match="weight 3"):
        graph.delay()
    assert qenv["queue.job"].search_count([]) == 0


def test_explain_says_a_job_no_longer_fits_when_the_limit_was_lowered(qenv, partner):
    qenv["queue.limit"].set_limit("video", 10)
    job = partner.with_delay(channel="video", weight=8).record()
    qenv["queue.limit"].set_limit("video", 5)
    reasons = explain(qenv, job.id)
    assert reasons[0].code == "weight_never_fits"
    assert "weight 8 never fits in limit 5" in reasons[0].message


# -- max_depth -------------------------------------------------------------------------


def test_limit_validates_max_depth_and_policy(qenv):
    Limit = qenv["queue.limit"]
    for bad in (-1, 1.5, True, "3", INT_MAX + 1):
        with pytest.raises(ValueError, match="max_depth must be an int from 0"):
            Limit.set_limit("exports", 1, max_depth=bad)
    with pytest.raises(ValueError, match="depth_policy must be one of raise, skip, got 'drop'"):
        Limit.set_limit("exports", 1, depth_policy="drop")
    assert not Limit.search([("name", "=", "exports")])
    record = Limit.set_limit("exports", 1)
    assert (record.max_depth, record.depth_policy, record.skipped) == (0, "raise", 0)
    record = Limit.set_limit("exports", 2, max_depth=3, depth_policy="skip")
    assert (record.limit, record.max_depth, record.depth_policy) == (2, 3, "skip")
    record = Limit.set_limit("exports", 4)  # what is not given is kept
    assert (record.limit, record.max_depth, record.depth_policy) == (4, 3, "skip")


def test_a_full_channel_raises_channel_full_error(qenv, partner):
    qenv["queue.limit"].set_limit("exports", 1, max_depth=2)
    partner.with_delay(channel="exports").record("1")
    partner.with_delay(channel="exports").record("2")
    with pytest.raises(ChannelFullError) as caught:
        partner.with_delay(channel="exports").record("3")
    error = caught.value
    assert (error.channel, error.depth, error.max_depth) == ("exports", 2, 2)
    assert "channel exports is full: 2 of 2" in str(error)
    assert _depth(qenv, "exports") == 2
    assert partner.with_delay(channel="elsewhere").record("4")  # other channels are free


def test_the_transaction_stays_usable_after_channel_full_error(qregistry):
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["queue.limit"].set_limit("exports", 1, max_depth=1)
        partner = env["res.partner"].create({"name": "Acme"})
        partner.with_delay(channel="exports").record("1")
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].search([], limit=1)
        with pytest.raises(ChannelFullError):
            partner.with_delay(channel="exports").record("2")
        other = partner.with_delay(channel="other").record("3")
        partner.write({"name": "Still usable"})
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        assert env["queue.job"].browse(other.id).channel == "other"
        assert env["res.partner"].browse(partner.id).name == "Still usable"
        assert _depth(env, "exports") == 1


def test_the_skip_policy_returns_no_job_and_counts(qenv, partner):
    limit = qenv["queue.limit"].set_limit("exports", 1, max_depth=1, depth_policy="skip")
    assert partner.with_delay(channel="exports").record("1")
    skipped = partner.with_delay(channel="exports").record("2")
    assert skipped._name == "queue.job" and not skipped
    assert not partner.delayable(channel="exports").record("3").delay()
    assert limit.skipped == 2
    assert _depth(qenv, "exports") == 1


def test_jobs_that_leave_waiting_and_pending_free_room(qenv, partner):
    qenv["queue.limit"].set_limit("exports", 1, max_depth=1)
    job = partner.with_delay(channel="exports").record("1")
    with pytest.raises(ChannelFullError):
        partner.with_delay(channel="exports").record("2")
    job.cancel()
    assert partner.with_delay(channel="exports").record("3")


def test_a_graph_into_a_full_channel_is_refused_or_skipped_whole(qenv, partner):
    limit = qenv["queue.limit"].set_limit("exports", 1, max_depth=2)
    graph = chain(
        partner.delayable(channel="other").record("a"),
        group(
            partner.delayable(channel="exports").record("b"),
            partner.delayable(channel="exports").record("c"),
            partner.delayable(channel="exports").record("d"),
        ),
    )
    with pytest.raises(ChannelFullError, match="no room for 3 jobs"):
        graph.delay()
    assert qenv["queue.job"].search_count([]) == 0
    limit.write({"depth_policy": "skip"})
    assert not graph.delay()
    assert qenv["queue.job"].search_count([]) == 0 and limit.skipped == 1
    limit.write({"max_depth": 3})  # room for the three (waiting ones count)
    jobs = graph.delay()
    assert len(jobs) == 4 and _depth(qenv, "exports") == 3


def test_a_new_bound_applies_in_the_same_transaction(qenv, partner):
    partner.with_delay(channel="exports").record("1")
    qenv["queue.limit"].set_limit("exports", 1, max_depth=1)
    with pytest.raises(ChannelFullError):
        partner.with_delay(channel="exports").record("2")


def test_unbounded_channels_read_their_rules_once_per_transaction(qenv, partner):
    cr = qenv.cr
    partner.with_delay(channel="a").record("warm")  # the rules of channel a are known now
    before = cr.sql_count
    for _ in range(5):
        partner.with_delay(channel="a").record()
    cr.flush()  # (PostgreSQL writes the jobs of a transaction together)
    # one INSERT each, nothing else; on PostgreSQL fewer: blocks of ids (2, then 4),
    # then one INSERT of the five rows
    assert cr.sql_count - before == (3 if cr.defers_inserts else 5)


def test_explain_tells_that_the_channel_is_full(qenv, partner):
    qenv["queue.limit"].set_limit("exports", 1, max_depth=2)
    partner.with_delay(channel="exports").record("1")
    job = partner.with_delay(channel="exports").record("2")
    reasons = {r.code: r for r in explain(qenv, job.id)}
    assert "channel exports is full: 2 of 2" in reasons["depth_full"].message


def test_stats_rows_show_the_bound(qenv, partner):
    from job_worker.monitoring import stats

    qenv["queue.limit"].set_limit("exports", 1, max_depth=1, depth_policy="skip")
    partner.with_delay(channel="exports").record("1")
    partner.with_delay(channel="exports").record("2")
    row = next(r for r in stats.channel_rows(qenv.cr) if r["name"] == "exports")
    assert (row["max_depth"], row["depth"], row["depth_policy"], row["skipped"]) == (
        1,
        1,
        "skip",
        1,
    )


# -- exact under concurrency: many processes at once --------------------------------

_ENQUEUER = textwrap.dedent(
    """
    import sys
    from job_worker import SUPERUSER_ID, Registry, api
    from job_worker.exceptions import ChannelFullError

    url, attempts, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    registry = Registry(url, ["jobapp"])
    print("ready", flush=True)
    sys.stdin.readline()  # every process starts enqueueing at once
    done = refused = skipped = 0
    for i in range(attempts):
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            partner = env["res.partner"].browse(1)
            try:
                job = partner.with_delay(channel="bounded").record(str(i))
            except ChannelFullError:
                refused += 1
                continue
            if job:
                done += 1
            else:
                skipped += 1
    registry.close()
    print(done, refused, skipped, flush=True)
    """
)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_concurrent_enqueuers_never_take_the_depth_over_its_bound(
    qregistry, db_url, tmp_path, policy
):
    processes, attempts, bound = 16, 12, 100
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["res.partner"].create({"name": "Acme"})
        env["queue.limit"].set_limit("bounded", 1, max_depth=bound, depth_policy=policy)
    script = tmp_path / "enqueuer.py"
    script.write_text(_ENQUEUER)
    apps = str(Path(__file__).resolve().parents[1] / "apps")
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([apps, *sys.path])}
    children = [
        subprocess.Popen(
            [sys.executable, str(script), db_url, str(attempts), "go"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environ,
        )
        for _ in range(processes)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:  # release them together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        totals = [0, 0, 0]
        for child in children:
            out, _err = child.communicate(timeout=40)
            assert child.returncode == 0
            for i, value in enumerate(out.split()):
                totals[i] += int(value)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    done, refused, skipped = totals
    with qregistry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        assert _depth(env, "bounded") == bound == done
        limit = env["queue.limit"].search([("name", "=", "bounded")])
        if policy == "raise":
            assert (refused, skipped, limit.skipped) == (processes * attempts - bound, 0, 0)
        else:
            assert refused == 0
            assert skipped == limit.skipped == processes * attempts - bound

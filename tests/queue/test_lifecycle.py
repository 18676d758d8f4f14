"""The job states are spelled once, in job_worker.queue.lifecycle."""

from __future__ import annotations

import pytest

from job_worker.queue.lifecycle import ACCEPTS, ACTIVE, ALL, QUEUED, TERMINAL, JobState, sql_in


def test_every_state_is_either_active_or_terminal_and_reads_as_its_stored_text():
    assert set(ACTIVE) | set(TERMINAL) == set(ALL) and not set(ACTIVE) & set(TERMINAL)
    assert set(QUEUED) < set(ACTIVE)
    assert [str(s) for s in ALL] == ["waiting", "pending", "started", "done", "failed", "cancelled"]
    assert f"{JobState.DONE}" == "done" and JobState.CANCELLED.label == "Cancelled"


def test_each_manual_action_accepts_every_state_but_the_one_it_sets():
    assert ACCEPTS["set_done"] == tuple(s for s in ALL if s != "done")
    assert ACCEPTS["set_failed"] == tuple(s for s in ALL if s != "failed")
    assert ACCEPTS["cancel"] == ACTIVE
    assert set(ACCEPTS["requeue"]) == set(TERMINAL)


def test_the_queue_job_model_knows_the_same_states(env):
    field = env["queue.job"]._fields["state"]
    assert [value for value, _label in field.selection] == list(ALL)


def test_a_state_condition_is_sql_text_of_known_states_only():
    assert sql_in(TERMINAL) == "state IN ('done', 'failed', 'cancelled')"
    assert sql_in([JobState.STARTED], "p.state") == "p.state IN ('started')"
    with pytest.raises(TypeError, match='expected a JobState, got "done\'; --"'):
        sql_in(["done'; --"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one state"):
        sql_in([])

"""How a job reads for people: its call as Python writes it, its attempts against the
runs allowed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

import pytest

from job_worker.queue.describe import attempts_text, call_text
from job_worker.queue.serialization import encode

pytestmark = pytest.mark.timeout(30)


def stored(*args, **kwargs):
    return encode(list(args), "args"), encode(kwargs, "kwargs")


def test_call_reads_as_python_with_positional_arguments_only():
    args, kwargs = stored(99.9)
    assert call_text("res.partner", "charge_card", [4], args, kwargs) == (
        "env['res.partner'].browse([4]).charge_card(99.9)"
    )


def test_call_reads_as_python_with_keyword_arguments():
    args, kwargs = stored(1, x=2, label="a b")
    assert call_text("m.o", "f", [], args, kwargs) == "env['m.o'].browse([]).f(1, x=2, label='a b')"
    assert call_text("m.o", "f", [1, 2], [], {}) == "env['m.o'].browse([1, 2]).f()"


def test_call_shows_stored_types_as_the_values_they_stand_for():
    when = datetime(2025, 6, 1, 9, 30)
    key = UUID("12345678-1234-5678-1234-567812345678")
    args, kwargs = stored((1,), {"$odd": True}, when, Decimal("1.50"), key, flag=None)
    text = call_text("m.o", "f", [], args, kwargs)
    assert text == (
        "env['m.o'].browse([]).f((1,), {'$odd': True}, datetime.datetime(2025, 6, 1, 9, 30),"
        " Decimal('1.50'), UUID('12345678-1234-5678-1234-567812345678'), flag=None)"
    )
    records = [{"$records": ["res.partner", [1, 2]]}]
    assert call_text("m.o", "f", [], records, {}) == (
        "env['m.o'].browse([]).f(env['res.partner'].browse([1, 2]))"
    )


def test_attempts_read_against_the_runs_allowed_never_above_them():
    # a failed job with max_retries 5 ran 6 times (PRODUCT.md 5): 6 of 6, not 6/5
    assert attempts_text(6, 5) == "6 failed of 6 runs allowed (max_retries 5)"
    assert attempts_text(6, 5, short=True) == "6/6"
    assert attempts_text(0, 2, short=True) == "0/3"
    assert attempts_text(12, 0) == "12 failed, retried without end (max_retries 0)"
    assert attempts_text(12, 0, short=True) == "12/∞"

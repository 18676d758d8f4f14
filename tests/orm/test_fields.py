"""Every scalar field type: what is written is what is read back from the database."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from job_worker import fields, models


def reread(record):
    """The record with its cache emptied, so that the next read comes from the database."""
    record.env.invalidate_all()
    return record


def lead(env, **values):
    return env["crm.lead"].create({"name": "Lead", **values})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "Café ☕ 'quoted' \"double\" %s %% ?"),
        ("description", "line one\nline two\n" + "x" * 10_000),
        ("priority", -42),
        ("priority", 2**31 - 1),
        ("expected_revenue", 1234.5625),
        ("won", True),
        ("deadline", date(2024, 2, 29)),
        ("contacted_at", datetime(2024, 2, 29, 23, 59, 58, 123456)),
        ("stage", "qualified"),
        ("data", {"nested": [1, 2.5, "three", None, True], "empty": {}}),
        ("data", ["a", 1]),
        ("data", "just a string"),
        ("data", 7),
    ],
)
def test_a_written_value_is_read_back_from_the_database_unchanged(env, field, value):
    record = lead(env, **{field: value})
    assert record[field] == value  # from the cache
    assert reread(record)[field] == value  # from the database
    assert type(record[field]) is type(value)


@pytest.mark.parametrize(
    ("field", "empty"),
    [
        ("description", False),
        ("priority", 0),
        ("expected_revenue", 0.0),
        ("won", False),
        ("deadline", False),
        ("contacted_at", False),
        ("data", None),
        ("partner_id", None),
    ],
)
def test_an_empty_field_reads_as_its_empty_value(env, field, empty):
    record = reread(lead(env, **{field: False}) if field != "data" else lead(env))
    value = record[field]
    if field == "partner_id":
        assert not value and value._name == "res.partner"
    else:
        assert value == empty and type(value) is type(empty)


def test_assigning_an_attribute_writes_it_to_the_database(env):
    record = lead(env)
    record.priority = 7
    record["description"] = "set by item"
    env.cr.execute("SELECT priority, description FROM crm_lead WHERE id = %s", [record.id])
    assert env.cr.fetchone() == (7, "set by item")


def test_writing_false_or_none_empties_a_field(env):
    record = lead(env, description="text", deadline=date(2024, 1, 1), priority=3)
    record.write({"description": False, "deadline": None, "priority": False})
    env.cr.execute(
        "SELECT description, deadline, priority FROM crm_lead WHERE id = %s", [record.id]
    )
    assert env.cr.fetchone() == (None, None, None)
    assert reread(record).description is False
    assert record.priority == 0


def test_constant_defaults_fill_fields_not_given(env):
    record = reread(lead(env))
    assert record.priority == 1
    assert record.stage == "new"


def test_a_given_value_wins_over_the_default(env):
    assert lead(env, priority=5, stage="won").priority == 5


def test_callable_defaults_are_computed_per_record_from_the_environment(env):
    other = env["res.company"].create({"name": "Other Co"})
    mine = env["res.users"].create({"name": "Mine", "login": "mine"})
    theirs = env["res.users"].with_company(other).create({"name": "Theirs", "login": "theirs"})
    assert mine.company_id.id == 1
    assert theirs.company_id == other


def test_create_and_write_dates_are_set_by_the_runtime(env):
    before = fields.Datetime.now()
    record = lead(env)
    assert before <= record.create_date <= fields.Datetime.now()
    assert record.write_date == record.create_date
    record.write({"priority": 2})
    assert record.write_date >= record.create_date


def test_a_datetime_with_a_timezone_is_stored_as_naive_utc(env):
    paris_summer = timezone(timedelta(hours=2))
    record = lead(env, contacted_at=datetime(2024, 6, 1, 14, 30, tzinfo=paris_summer))
    assert record.contacted_at == datetime(2024, 6, 1, 12, 30)
    assert reread(record).contacted_at == datetime(2024, 6, 1, 12, 30)
    assert record.contacted_at.tzinfo is None


def test_datetime_now_is_naive_utc():
    now = fields.Datetime.now()
    assert now.tzinfo is None
    assert abs(datetime.now(UTC).replace(tzinfo=None) - now) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 10:20:30", datetime(2024, 3, 1, 10, 20, 30)),
        ("2024-03-01T10:20:30.5", datetime(2024, 3, 1, 10, 20, 30, 500000)),
        ("2024-03-01T10:20:30+01:00", datetime(2024, 3, 1, 9, 20, 30)),
        ("2024-03-01", datetime(2024, 3, 1)),
    ],
)
def test_datetimes_are_accepted_as_iso_strings(env, text, expected):
    assert reread(lead(env, contacted_at=text)).contacted_at == expected


def test_dates_are_accepted_as_iso_strings(env):
    assert reread(lead(env, deadline="2024-12-31")).deadline == date(2024, 12, 31)


def test_a_float_field_takes_an_int_and_gives_back_a_float(env):
    record = reread(lead(env, expected_revenue=3))
    assert record.expected_revenue == 3.0 and isinstance(record.expected_revenue, float)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", 42, TypeError),
        ("name", b"bytes", TypeError),
        ("description", ["a"], TypeError),
        ("priority", "1", TypeError),
        ("priority", 1.5, TypeError),
        ("priority", True, TypeError),
        ("expected_revenue", "1.5", TypeError),
        ("expected_revenue", True, TypeError),
        ("won", 1, TypeError),
        ("won", "yes", TypeError),
        ("deadline", datetime(2024, 1, 1, 10, 0), TypeError),
        ("deadline", 20240101, TypeError),
        ("deadline", "01/02/2024", ValueError),
        ("contacted_at", date(2024, 1, 1), TypeError),
        ("contacted_at", "yesterday", ValueError),
        ("stage", "archived", ValueError),
        ("stage", 1, TypeError),
        ("data", {1, 2}, TypeError),
        ("data", object(), TypeError),
        ("partner_id", "Acme", TypeError),
        ("partner_id", 1.0, TypeError),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field_and_the_value(
    env, count_rows, field, value, error
):
    before = count_rows(env, "crm.lead")
    with pytest.raises(error) as raised:
        lead(env, **{field: value})
    assert f"crm.lead.{field}" in str(raised.value)
    assert repr(value) in str(raised.value)
    assert count_rows(env, "crm.lead") == before


def test_a_wrong_value_written_on_a_record_leaves_it_unchanged(env):
    record = lead(env, priority=3)
    with pytest.raises(TypeError, match=r"crm\.lead\.priority.*'high'"):
        record.write({"description": "changed", "priority": "high"})
    env.cr.execute("SELECT priority, description FROM crm_lead WHERE id = %s", [record.id])
    assert env.cr.fetchone() == (3, None)
    assert record.description is False


def test_a_required_field_must_be_given(env, count_rows):
    before = count_rows(env, "crm.lead")
    with pytest.raises(ValueError, match=r"crm\.lead\.name is required"):
        env["crm.lead"].create({"priority": 2})
    with pytest.raises(ValueError, match=r"crm\.lead\.name is required"):
        env["crm.lead"].create([{"name": "fine"}, {"name": False}])
    assert count_rows(env, "crm.lead") == before


def test_a_required_field_cannot_be_emptied(env):
    record = lead(env)
    with pytest.raises(ValueError, match=r"crm\.lead\.name is required"):
        record.name = False
    assert reread(record).name == "Lead"


def test_selection_values_are_listed_in_the_error(env):
    with pytest.raises(ValueError, match="'new', 'qualified', 'won'"):
        lead(env, stage="lost")


def test_json_values_are_copied_on_the_way_in(env):
    payload = {"items": [1, 2]}
    record = lead(env, data=payload)
    payload["items"].append(3)
    assert record.data == {"items": [1, 2]}


def test_json_tuples_come_back_as_lists(env):
    assert reread(lead(env, data={"pair": (1, 2)})).data == {"pair": [1, 2]}


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        'a"b',
        "",
        3,
        0,
        1.5,
        0.0,
        True,
        False,
        None,
        [{"email": "é@x.org", "n": [1, None, False]}],
    ],
)
def test_json_is_stored_as_compact_text(value):
    assert fields.Json().to_column(value) == (
        None if value is None else json.dumps(value, separators=(",", ":"))
    )


def test_a_field_declared_with_an_unknown_option_is_refused_at_once():
    with pytest.raises(TypeError, match=r"unknown option.*colour"):
        fields.Char(colour="red")


def test_many2one_ondelete_must_be_a_known_policy():
    with pytest.raises(ValueError, match="ondelete must be"):
        fields.Many2one("res.partner", ondelete="explode")


def test_a_model_class_needs_a_name_or_an_inherit():
    with pytest.raises(TypeError, match="needs a _name or an _inherit"):

        class Nameless(models.Model):
            pass


def test_the_id_of_a_record_cannot_be_assigned(env):
    record = lead(env)
    with pytest.raises(TypeError, match="cannot be assigned"):
        record.id = 5
    with pytest.raises(ValueError, match="id of a record is not written"):
        record.write({"id": 5})


def test_fields_know_their_string_and_options(env):
    field = env["crm.lead"]._fields["priority"]
    assert (field.string, field.index, field.required, field.default) == (
        "Priority",
        True,
        False,
        1,
    )
    assert env["res.partner"]._fields["company_id"].string == "Company"
    assert env["res.partner"]._fields["tag_ids"].string == "Tags"

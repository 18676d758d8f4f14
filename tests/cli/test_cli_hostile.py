"""Hostile job text and values on the command line: text from jobs cannot act on the
terminal, a database password is never printed, bad values give one-line errors."""

from __future__ import annotations

import io
import json
import logging
import sys

import psycopg
import pytest
from rich.console import Console

from job_worker import SUPERUSER_ID, api
from job_worker.cli.output import Output
from job_worker.db import redact_url
from job_worker.worker.logs import TextFormatter

pytestmark = pytest.mark.timeout(90)

#: clears the screen, sets the terminal's title, and starts a forged log line
DESCRIPTION = "Export\x1b[2J\x1b]0;pwned\x07\n2026-01-01 00:00:00.000 INFO    [1] forged: ok"
MESSAGE = "refused\x1b[31m red\r\nCRITICAL forged \u202egnp.exe"


@pytest.fixture
def hostile_job(ops_registry) -> int:
    """A failed job whose description, exception message and traceback hold control
    characters, committed so that the commands see it."""
    with ops_registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        partner = env["res.partner"].create({"name": "P"})
        with pytest.raises(ValueError):  # synchronous mode: the job runs and fails at once
            partner.with_context(queue_job__no_delay=True).with_delay(
                description=DESCRIPTION
            ).explode(MESSAGE)
        job = env["queue.job"].search([])
        assert job.state == "failed"
        return job.id


def _no_terminal_codes(output: str) -> None:
    for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\x1b[31m", "\r", "\u202e"):
        assert raw not in output


def test_jobs_list_escapes_control_characters_of_job_text(cli, hostile_job):
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output
    _no_terminal_codes(result.output)
    assert r"Export\x1b[2J\x1b]0;pwned\x07\n2026-01-01" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith(f"{hostile_job} ")]
    assert len(rows) == 1  # the newline did not add a row
    assert len(result.output.splitlines()) == 2  # header and the one job


def test_jobs_show_escapes_control_characters_and_keeps_the_traceback_lines(cli, hostile_job):
    result = cli("jobs", "show", str(hostile_job))
    assert result.exit_code == 0, result.output
    _no_terminal_codes(result.output)
    assert r"refused\x1b[31m red\r\nCRITICAL forged \u202egnp.exe" in result.output
    assert "Traceback (most recent call last):\n" in result.output
    assert not any(line.startswith("CRITICAL forged") for line in result.output.splitlines())
    # --json keeps the text as it is, escaped by JSON
    data = json.loads(cli("jobs", "show", str(hostile_job), "--json").output)
    assert data["name"] == DESCRIPTION
    assert data["exc_message"] == MESSAGE


def test_a_terminal_table_escapes_job_text():
    buffer = io.StringIO()
    out = Output(console=Console(file=buffer, force_terminal=True, width=300))
    out.table([{"id": 1, "call": DESCRIPTION}], ["id", "call"])
    out.fields({"name": DESCRIPTION})
    out.say(MESSAGE, "green")
    _no_terminal_codes(buffer.getvalue())
    assert buffer.getvalue().count(r"Export\x1b[2J") == 2
    assert r"refused\x1b[31m red\r\n" in buffer.getvalue()


def test_a_text_log_line_escapes_job_text_and_indents_tracebacks():
    try:
        raise ValueError(MESSAGE)
    except ValueError:
        record = logging.LogRecord(
            "job_worker", logging.ERROR, __file__, 1, "job %s failed: %s", (7, DESCRIPTION), True
        )
        record.exc_info = sys.exc_info()
    record.job_name = DESCRIPTION  # an extra
    text = TextFormatter().format(record)
    _no_terminal_codes(text)
    first, *trace = text.split("\n")
    assert r"job 7 failed: Export\x1b[2J\x1b]0;pwned\x07\n2026-01-01" in first
    assert r"job_name=Export\x1b[2J" in first
    assert trace[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in trace)  # no line can pass for a record
    assert trace[-2:] == [
        r"    ValueError: refused\x1b[31m red\r",
        r"    CRITICAL forged \u202egnp.exe",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "show", str(2**70)),
        ("jobs", "explain", str(2**64)),
        ("jobs", "requeue", "1", str(2**40)),
        ("jobs", "list", "--before", str(2**63)),
        ("jobs", "list", "--finished", f"{2**70}d"),
        ("limits", "set", "exports", str(2**40)),
        ("limits", "set", "exports", "1", "--rate", "nan"),
        ("limits", "set", "exports", "1", "--rate", "inf"),
        ("limits", "set", "e" * 65, "1"),
        ("enqueue", "res.partner", "export", "--ids", str(2**70)),
        ("enqueue", "res.partner", "export", "--priority", str(2**70)),
        ("enqueue", "res.partner", "export", "--eta", "nan"),
        ("enqueue", "res.partner", "export", "--timeout", "inf"),
        ("enqueue", "res.partner", "export", "--channel", "a\n"),
        ("enqueue", "res.partner", "export", "--args", '["\\u0000"]'),
        ("enqueue", "res.partner", "export", "--description", "\udc80"),
        # bytes of a command line that are not UTF-8 come as lone surrogates
        ("jobs", "list", "--channel", "x\udcff"),
        ("jobs", "list", "-q", "\udcff"),
        ("jobs", "fail", "1", "--message", "a\udcff"),
        ("limits", "delete", "x\udcff"),
        ("enqueue", "res.partner", "export", "--user", "x\udcff"),
        ("users", "add", "x\udcff", "--password", "pw"),
        ("vacuum", "--retention-days", "nan"),
        ("vacuum", "--batch", str(2**70)),
    ],
    ids=lambda args: " ".join(args)[:40],
)
def test_huge_ids_and_bad_values_give_a_one_line_error(cli, scenario, args):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output


def test_a_huge_user_id_or_search_is_not_found_rather_than_a_crash(cli, scenario):
    result = cli("jobs", "list", "--user", str(2**70))
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no user with id {2**70}"
    result = cli("jobs", "list", "--search", str(2**70))
    assert result.exit_code == 0, result.output
    assert "no jobs match" in result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:s3cret@db:5432/app", "postgresql://bob:***@db:5432/app"),
        ("postgresql://bob:p@ss/w0rd@db/app", "postgresql://bob:***@db/app"),
        (
            "postgresql://db/app?user=bob&password=s3cret",
            "postgresql://db/app?user=bob&password=***",
        ),
        ("postgresql://bob@db/app", "postgresql://bob@db/app"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url, shown):
    assert redact_url(url) == shown


def test_commands_never_print_the_database_password(pg_url, tmp_path):
    from click.testing import CliRunner

    from job_worker.cli import main

    with psycopg.connect(pg_url) as cnx:
        user = cnx.execute("SELECT current_user").fetchone()[0]
    # trust authentication: the password is accepted and never checked
    url = pg_url.replace("://", f"://{user}:Sup3rS3cret@", 1)
    runner = CliRunner(env={"JOB_WORKER_DATABASE_URL": url, "JOB_WORKER_LOAD": "opsapp"})
    outputs = []
    for args in (("jobs", "list"), ("init",), ("init", "--json"), ("unknown-url",)):
        if args == ("unknown-url",):
            args = ("jobs", "list", "-d", "mysql://bob:Sup3rS3cret@db/app")
        result = runner.invoke(main, list(args), catch_exceptions=False)
        outputs.append(result.output)
    assert "no job_worker tables" in outputs[0]  # the first command saw an empty schema
    assert "created the schema" in outputs[1]
    assert "***" in outputs[1] and "***" in outputs[3]
    for output in outputs:
        assert "Sup3rS3cret" not in output
    from job_worker import Registry

    registry = Registry(url, ["opsapp"])
    try:
        assert "Sup3rS3cret" not in repr(registry)
    finally:
        registry.close()

"""Opening a database from the command line: only ``init`` (and ``demo``) create one;
every way of pointing at something that is not a usable database ends in one line
on stderr and exit code 1, never in a traceback, a hang or a new empty file."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from job_worker.cli import main

pytestmark = pytest.mark.timeout(60)

#: every command that opens a database, with the arguments it needs; none may create one
READ_COMMANDS = [
    ("jobs", "list"),
    ("jobs", "show", "1"),
    ("jobs", "requeue", "1"),
    ("limits", "list"),
    ("limits", "set", "exports", "2"),
    ("enqueue", "res.partner", "exists"),
    ("stats",),
    ("vacuum",),
    ("users", "list"),
    ("dashboard", "--port", "0"),
]


def invoke(*args: str) -> Result:
    runner = CliRunner(env={"JOB_WORKER_DATABASE_URL": None, "JOB_WORKER_LOAD": None})
    return runner.invoke(main, list(args), catch_exceptions=False)


def one_line_error(result: Result) -> str:
    """The error a command printed, checked to be one line and no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_commands_other_than_init_say_a_missing_file_does_not_exist(tmp_path, command):
    path = tmp_path / "mistyped.db"
    error = one_line_error(invoke(*command, "-d", f"sqlite:///{path}"))
    assert f"database file {path} does not exist" in error
    assert "job-worker init" in error
    assert not path.exists()


def test_init_creates_the_file_that_other_commands_refused(tmp_path):
    path = tmp_path / "crm.db"
    url = f"sqlite:///{path}"
    one_line_error(invoke("stats", "-d", url))
    assert not path.exists()
    assert invoke("init", "-d", url).exit_code == 0
    assert invoke("stats", "-d", url).exit_code == 0


def test_an_empty_database_asks_for_init(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()  # an empty file is an SQLite database without tables
    error = one_line_error(invoke("jobs", "list", "-d", f"sqlite:///{path}"))
    assert error == f"Error: no job_worker tables in {path}: run `job-worker init` first"


def test_a_schema_older_than_the_loaded_modules_asks_for_init(tmp_path):
    path = tmp_path / "old.db"
    assert invoke("init", "-d", f"sqlite:///{path}").exit_code == 0
    with sqlite3.connect(path) as cnx:  # as a database set up by an older version
        cnx.execute("DROP TABLE queue_config")
    for command in (("jobs", "list"), ("stats",), ("config", "list")):
        error = one_line_error(invoke(*command, "-d", f"sqlite:///{path}"))
        assert error == (
            f"Error: the schema of {path} is older than the loaded modules (no table"
            " queue_config): run `job-worker init` to upgrade it"
        )
    assert invoke("init", "-d", f"sqlite:///{path}").exit_code == 0
    assert invoke("jobs", "list", "-d", f"sqlite:///{path}").exit_code == 0


@pytest.mark.parametrize("command", [("init",), ("jobs", "list")], ids=" ".join)
def test_a_folder_that_does_not_exist_is_named(tmp_path, command):
    folder = tmp_path / "nonexistdir"
    path = folder / "x.db"
    error = one_line_error(invoke(*command, "-d", f"sqlite:///{path}"))
    assert str(path) in error
    if command == ("init",):
        assert error == f"Error: cannot open database file {path}: folder {folder} does not exist"
    assert not folder.exists()


@pytest.mark.parametrize("command", [("init",), ("jobs", "list")], ids=" ".join)
def test_a_folder_given_as_the_database_is_refused(tmp_path, command):
    error = one_line_error(invoke(*command, "-d", f"sqlite:///{tmp_path}"))
    assert error == f"Error: database path {tmp_path} is a folder, not a database file"


@pytest.mark.parametrize("command", [("init",), ("jobs", "list")], ids=" ".join)
def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path, command):
    path = tmp_path / "notes.txt"
    text = "shopping list: milk, eggs, a job queue\n" * 100
    path.write_text(text)
    error = one_line_error(invoke(*command, "-d", f"sqlite:///{path}"))
    assert error == f"Error: {path} is not an SQLite database file"
    assert path.read_text() == text


@pytest.fixture
def read_only_database(tmp_path) -> Iterator[Path]:
    """A database set up by ``init``, then made read-only: by its mode, or (for root,
    whom modes do not stop) by the immutable attribute."""
    path = tmp_path / "ro.db"
    assert invoke("init", "-d", f"sqlite:///{path}").exit_code == 0
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield path
        finally:
            path.chmod(0o644)
        return
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"running as root and cannot make a file immutable: {made.stderr!r}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.parametrize(
    "command",
    [("init",), ("enqueue", "res.partner", "exists"), ("limits", "set", "exports", "2")],
    ids=" ".join,
)
def test_a_read_only_file_is_named_by_commands_that_write(read_only_database, command):
    error = one_line_error(invoke(*command, "-d", f"sqlite:///{read_only_database}"))
    assert error == f"Error: cannot write database file {read_only_database}: it is read-only"


def test_a_read_only_file_can_still_be_read(read_only_database):
    listed = invoke("jobs", "list", "--json", "-d", f"sqlite:///{read_only_database}")
    assert listed.exit_code == 0, listed.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [("init",), ("jobs", "list")], ids=" ".join)
def test_a_postgres_database_that_does_not_exist_fails_at_once_with_the_server_message(
    pg_database, command
):
    name = f"job_worker_missing_{uuid.uuid4().hex[:8]}"
    url = pg_database.rsplit("/", 1)[0] + "/" + name
    error = one_line_error(invoke(*command, "-d", url))
    assert f'database "{name}" does not exist' in error


@pytest.mark.parametrize("command", [("init",), ("jobs", "list")], ids=" ".join)
def test_a_postgres_port_where_nothing_listens_fails_at_once(pg_database, command):
    url = f"postgresql://127.0.0.1:{free_port()}/postgres"
    error = one_line_error(invoke(*command, "-d", url))
    assert "Connection refused" in error

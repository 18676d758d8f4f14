"""A command prints rich tables on a terminal only, and imports rich only then."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from job_worker.cli.output import Output

pytestmark = pytest.mark.timeout(60)

PROBE = """
import sys
from job_worker.cli.output import Output
out = Output()
out.table([{"a": 1}], ["a"])
print("rich" if "rich" in sys.modules else "plain", out.rich)
"""


def run_probe(env: dict[str, str], *, terminal: bool) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    environ.update(env)
    if not terminal:
        done = subprocess.run(
            [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[-1]
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            env=environ,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode().strip().splitlines()[-1]
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)


def test_piped_output_is_plain_and_never_imports_rich():
    assert run_probe({}, terminal=False) == "plain False"


def test_a_terminal_gets_rich_tables():
    assert run_probe({}, terminal=True).endswith("rich True")


@pytest.mark.parametrize(
    ("env", "expected"), [({"FORCE_COLOR": "1"}, True), ({"TTY_COMPATIBLE": "0"}, False)]
)
def test_rich_decides_when_its_variables_are_set(env, expected):
    assert run_probe(env, terminal=False) == f"rich {expected}"


def test_json_output_is_never_rich():
    assert Output(as_json=True).rich is False

"""The worker's operations on SQLite.

SQLite has one writer at a time and no ``SKIP LOCKED``, ``NOTIFY`` or
advisory locks, which makes some things simpler and some different:

- A claim runs under ``BEGIN IMMEDIATE``: it holds the database's write lock,
  so no other claimer can interleave and the channel counts are exact.
- A job's transaction does *not* start with ``BEGIN IMMEDIATE`` (that would
  hold the single write lock for the whole run of the job, so a job that
  sleeps would stop every other writer). Its reads run outside a transaction,
  each seeing the latest commit (like PostgreSQL's READ COMMITTED), and its
  first write opens ``BEGIN IMMEDIATE``: from then until the commit the job
  holds the write lock. A job that writes early and then works for long blocks
  other writers for that long; the supervisor's own statements use a short
  busy timeout and retry later, so its timers and signals keep working.
- An executor's effects die with its process (the OS drops its locks and the
  uncommitted WAL frames are ignored), so a killed child is gone for sure.
  For a whole worker that stopped heart-beating, the pid recorded in
  ``queue_worker`` on this host must be dead too: one file, one host.
- Wake-ups: idle workers poll ``PRAGMA data_version`` (it changes when another
  connection commits) every few milliseconds and claim only then or when a
  scheduled job becomes due; jobs enqueued by this very process wake it at
  once (:func:`~.jobstore.fire_local_enqueue`).
"""

from __future__ import annotations

import os
import socket
import sqlite3
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from ..orm.fields import Datetime
from .jobstore import (
    CHANNEL_STATE,
    CLAIM_COLUMNS,
    NEXT_SCHEDULED,
    ChannelPlan,
    ClaimedJob,
    JobStore,
    Listener,
    Session,
    StaleJob,
    fire_local_enqueue,
)
from .sqlite import SqliteCursor

if TYPE_CHECKING:
    from .cursor import Cursor
    from .sqlite import SqliteBackend

# -- name: take_channel
# The best due jobs of one channel (SQLite has no LATERAL: one query per channel
# with room, each an index range scan of the pending index).
TAKE_CHANNEL = """
SELECT id, priority, scheduled_at FROM queue_job INDEXED BY queue_job_pending
 WHERE state = 'pending' AND channel = %s AND scheduled_at <= %s
 ORDER BY priority, scheduled_at, id LIMIT %s
"""

# -- name: mark_started
MARK_STARTED = f"""
UPDATE queue_job SET state = 'started', worker_id = %s, started_at = %s, heartbeat = %s,
       write_date = %s
 WHERE id IN (SELECT value FROM json_each(%s)) AND state = 'pending'
RETURNING {", ".join(CLAIM_COLUMNS)}
"""

# -- name: elect
ELECT = """
INSERT INTO queue_lease (name, holder, expires_at, create_date, write_date)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
                                 write_date = excluded.write_date
 WHERE queue_lease.holder = excluded.holder OR queue_lease.expires_at < %s
"""

# -- name: lease_holder
LEASE_HOLDER = "SELECT holder FROM queue_lease WHERE name = %s"

DATA_VERSION = "PRAGMA data_version"

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _is_read(query: str) -> bool:
    """Whether a statement only reads (it may run outside the job's transaction)."""
    head = query.lstrip()[:8].upper()
    if head.startswith(("SELECT", "VALUES")):
        return True
    if head.startswith("WITH"):
        upper = query.upper()
        return not any(word in upper for word in _WRITES)
    return False


class JobCursor(SqliteCursor):
    """A job's transaction: reads outside a transaction, ``BEGIN IMMEDIATE`` at the first
    write (see the module docstring)."""

    def _before_execute(self) -> None:
        pass  # decided per statement in _execute

    def _execute(self, query: str, params: Any) -> None:
        if not self._cnx.in_transaction and not _is_read(query):
            self._cur.execute("BEGIN IMMEDIATE")
        super()._execute(query, params)

    def _executemany(self, query: str, seq_of_params: Any) -> None:
        if not self._cnx.in_transaction:
            self._cur.execute("BEGIN IMMEDIATE")
        super()._executemany(query, seq_of_params)


class SqliteJobStore(JobStore):
    dialect = "sqlite"
    backend: SqliteBackend
    # Without statistics SQLite's planner prefers any (state, ...) index for
    # "state = 'pending'" and then scans every pending job: name the partial indexes.
    channel_state_sql = CHANNEL_STATE.replace(
        "FROM queue_job WHERE state = 'pending'",
        "FROM queue_job INDEXED BY queue_job_pending WHERE state = 'pending'",
    )
    next_scheduled_sql = NEXT_SCHEDULED.replace(
        "FROM queue_job WHERE", "FROM queue_job INDEXED BY queue_job_pending_due WHERE"
    )

    #: how long the supervisor waits for the write lock before retrying on its next turn
    supervisor_busy_timeout = 0.5

    def session(self, *, role: str) -> SqliteSession:
        return SqliteSession(self, role)

    def now(self, cr: Cursor) -> datetime:
        return Datetime.now()

    def _lock_and_read(self, cr: Cursor) -> tuple[list[Any], datetime]:
        # the first statement opens BEGIN IMMEDIATE: it holds the database's write lock
        cr.execute(self.channel_state_sql, ())
        rows = cr.fetchall()
        return rows, self.now(cr)

    def _take(
        self, cr: Cursor, plan: ChannelPlan, wanted: int, worker_id: str, now: datetime
    ) -> list[ClaimedJob]:
        candidates: list[tuple[Any, ...]] = []
        for channel, free in plan.free.items():
            cr.execute(TAKE_CHANNEL, (channel, now, min(free, wanted)))
            candidates.extend(cr.fetchall())
        candidates.sort(key=lambda row: (row[1], row[2], row[0]))
        ids = [row[0] for row in candidates[:wanted]]
        if not ids:
            return []
        _sql, params = self.backend.in_ids("id", ids)
        cr.execute(MARK_STARTED, (worker_id, now, now, now, *params))
        return [ClaimedJob.from_row(row) for row in cr.fetchall()]

    def executor_gone(self, cr: Cursor, job_id: int) -> bool:
        return True  # the caller saw the process die; its effects died with it

    def terminate_session(self, cr: Cursor, session_id: int | None) -> None:
        pass  # no server sessions: the killed process took its connection with it

    def _stale_executor_gone(self, cr: Cursor, job: StaleJob) -> bool:
        if job.pid and job.hostname == socket.gethostname():
            try:
                os.kill(job.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False  # alive, only slow: never overtake it
        return True

    def elect(self, session: Session, name: str, holder: str, ttl: float) -> bool:
        from datetime import timedelta

        with session.cursor(None) as cr:
            now = self.now(cr)
            cr.execute(ELECT, (name, holder, now + timedelta(seconds=ttl), now, now, now))
            cr.execute(LEASE_HOLDER, (name,))
            row = cr.fetchone()
        return bool(row and row[0] == holder)

    def notify_at_commit(self, cr: Cursor) -> None:
        url = self.backend.url
        cr.postcommit.add(partial(fire_local_enqueue, url), key=("local enqueue", url))

    def listener(self) -> SqliteListener:
        return SqliteListener(self.backend)


class SqliteSession(Session):
    """A sqlite3 connection of its own. The supervisor's waits for the write lock are
    short; an executor's job transaction uses :class:`JobCursor`."""

    def __init__(self, store: SqliteJobStore, role: str):
        self.store = store
        self.backend = store.backend
        self.role = role
        self._cnx: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._cnx is None:
            cnx = self.backend.connect()  # same pragmas as every connection of the backend
            if self.role == "supervisor":
                cnx.execute(
                    f"PRAGMA busy_timeout = {int(self.store.supervisor_busy_timeout * 1000)}"
                )
            self._cnx = cnx
        return self._cnx

    def cursor(self, registry: Any, *, readonly: bool = False) -> Cursor:
        cnx = self._connect()
        cls = JobCursor if self.role == "executor" else SqliteCursor
        cr = cls(self.backend, cnx, self._release, readonly)
        cr.registry = registry
        return cr

    def _release(self, cnx: Any, healthy: bool) -> None:
        if not healthy:
            self.close()

    @property
    def broken(self) -> bool:
        return False  # a file does not go away like a server

    def close(self) -> None:
        cnx, self._cnx = self._cnx, None
        if cnx is not None:
            cnx.close()


class SqliteListener(Listener):
    """Polls ``PRAGMA data_version`` on a connection of its own; woken at once by jobs
    enqueued in this process."""

    poll_interval = 0.01

    def __init__(self, backend: SqliteBackend):
        self.backend = backend
        self._cnx: sqlite3.Connection | None = None
        self._version: int | None = None
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        from .jobstore import on_local_enqueue

        on_local_enqueue(backend.url, self._poke)

    def _poke(self) -> None:
        try:
            os.write(self._write_fd, b"!")
        except (BlockingIOError, OSError):
            pass  # already poked, or closed

    def open(self) -> None:
        pass  # polling opens its connection lazily; a file is always there

    def fileno(self) -> int | None:
        return self._read_fd

    def woken(self) -> bool:
        woken = False
        try:
            while os.read(self._read_fd, 512):
                woken = True
        except (BlockingIOError, OSError):
            pass
        if self._cnx is None:
            self._cnx = self.backend.connect()
        row = self._cnx.execute(DATA_VERSION).fetchone()
        version = row[0] if row else None
        if version != self._version:
            self._version = version
            woken = True
        return woken

    def close(self) -> None:
        if self._cnx is not None:
            self._cnx.close()
            self._cnx = None

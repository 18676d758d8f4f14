"""What the supervisor's services of one database share.

One :class:`Database` per database the worker serves: its URL and printable name,
the registry (built once, as the worker starts), the job store, the supervisor's
session (one connection, used by the event loop's services one after the other),
the cluster settings as last read, and the guard every operation runs under
(:meth:`Database.guarded`, with the database's one :class:`~.backoff.Backoff`).
It runs nothing by itself: the services do (:mod:`.services`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..db import jobstore, redact_url
from ..orm.schema import installed_modules
from ..queue import config
from ..registry import Registry
from .backoff import FAILED, Backoff, Failed
from .settings import WorkerSettings

_logger = logging.getLogger(__name__)
T = TypeVar("T")


class Database:
    """One database served by the worker, as its supervisor-side services see it."""

    def __init__(self, index: int, url: str, settings: WorkerSettings, worker_id: str):
        self.index = index
        self.url = url
        self.settings = settings
        self.worker_id = worker_id
        #: the URL as logs show it: no user, no password
        self.name = redact_url(url.split("@")[-1])
        self.backoff = Backoff(self.name)
        self.registry: Registry | None = None
        self.store: jobstore.JobStore | None = None
        self.session: jobstore.Session | None = None
        #: the cluster settings of this database, as last read (:mod:`.cluster`)
        self.cluster = config.ClusterSettings()

    def open(self) -> None:
        """Build the registry and bring the schema up to date, once, as the worker starts.

        The database must exist and have been set up by ``job-worker init``: one that
        cannot be opened now raises (``DatabaseOpenError``) and stops the worker, as a
        mistake of configuration; failures after this are outages, retried."""
        # updates the schema, never creates one
        registry = Registry(self.url, list(self.settings.modules), create=False)
        try:
            self._warn_missing_modules(registry)
        finally:
            registry.backend.close()  # the supervisor works on sessions of its own
        self.registry = registry
        self.store = jobstore.for_backend(registry.backend)
        self.session = self.store.session(role="supervisor")

    def _warn_missing_modules(self, registry: Registry) -> None:
        """The database was set up with modules this worker does not load: jobs on their
        models would fail with "unknown model" (a worker started without ``--load``)."""
        with registry.cursor(readonly=True) as cr:
            installed = installed_modules(cr)
        loaded = {module.__name__ for module in registry.modules}
        missing = sorted(set(installed) - loaded)
        if missing:
            _logger.warning(
                "database %s has module(s) %s installed that this worker does not load:"
                " their jobs will fail; start it with --load %s",
                self.name,
                ", ".join(missing),
                ",".join(missing),
                extra={"event": "worker.modules_missing", "database": self.name},
            )

    def cursor(self, *, readonly: bool = False) -> Any:
        """A transaction on the supervisor's session."""
        assert self.session is not None, "the database is not open"
        return self.session.cursor(self.registry, readonly=readonly)

    def available(self, now: float) -> bool:
        return self.backoff.available(now)

    def guarded(self, now: float, what: str, func: Callable[[], T]) -> T | Failed:
        """Run ``func``; on failure log, back off and return :data:`~.backoff.FAILED`."""
        try:
            result = func()
        except Exception as exc:
            if self.session is not None and self.session.broken:
                self.session.close()  # reconnects on the next cursor
            self.backoff.failed(now, what, exc)
            return FAILED
        self.backoff.succeeded(now)
        return result

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.registry is not None:
            self.registry.close()

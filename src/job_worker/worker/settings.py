"""What a worker is told on its command line, with the defaults of PRODUCT.md 6.

The settings every worker of a database must share (default limit, stale window,
retention) are not here: they live in the database (:mod:`job_worker.queue.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the supervisor and its executors need to know, picklable."""

    databases: tuple[str, ...]
    modules: tuple[str, ...] = ()
    #: executor processes, each running one job at a time
    concurrency: int = 2
    #: jobs an executor holds at most while short jobs are due in a backlog (they share
    #: its transactions, a savepoint each; about 250 ms of work at their average time; on
    #: PostgreSQL an advisory lock each in the transaction; see docs/worker.md)
    batch: int = 64
    #: only take jobs of these channels (empty: every channel)
    channels: tuple[str, ...] = ()
    #: seconds running jobs get to finish after SIGTERM/SIGINT
    grace: float = 30.0
    #: seconds between heartbeats of the worker and of its running jobs
    heartbeat_interval: float = 5.0
    #: seconds between checks that running jobs were not cancelled meanwhile
    cancel_check_interval: float = 1.0
    #: seconds between claims when nothing wakes the worker (None: the database's default)
    poll_interval: float | None = None
    #: seconds between maintenance runs of the elected worker
    maintenance_interval: float = 5.0
    #: cap of the retry backoff, in seconds
    max_backoff: float = 3600.0
    log_format: str = "text"
    log_level: str = "INFO"
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            ("databases", bool(self.databases), "at least one database URL"),
            ("concurrency", self.concurrency >= 1, "an int >= 1"),
            ("batch", self.batch >= 1, "an int >= 1"),
            ("grace", self.grace >= 0, "seconds >= 0"),
            ("heartbeat_interval", self.heartbeat_interval > 0, "seconds > 0"),
            ("cancel_check_interval", self.cancel_check_interval > 0, "seconds > 0"),
            ("poll_interval", self.poll_interval is None or self.poll_interval > 0, "seconds > 0"),
            ("maintenance_interval", self.maintenance_interval > 0, "seconds > 0"),
            ("max_backoff", self.max_backoff >= 0, "seconds >= 0"),
            ("log_format", self.log_format in ("text", "json"), "text or json"),
        ]
        for name, ok, accepted in checks:
            if not ok:
                raise ValueError(
                    f"worker setting {name}={getattr(self, name)!r}: expected {accepted}"
                )

    def maintenance_settings(self) -> dict[str, object]:
        """What ``queue.maintenance._run_maintenance`` receives of them (the cluster
        settings add ``stale_after`` and ``retention_days``)."""
        return {"max_backoff": self.max_backoff, **self.extra}

import ctypes
import os
import time
from pathlib import Path

from job_worker import fields, models
from job_worker.exceptions import ChannelBackoff, RetryableJobError


class Effect(models.Model):
    """One row per run of a job that reached its write: counting them shows whether a
    job's effects were committed once, never, or twice."""

    _name = "workerapp.effect"
    _description = "Effect of a test job"
    _order = "id"

    name = fields.Char(required=True, index=True)
    job_uuid = fields.Char(index=True)
    pid = fields.Integer()
    started = fields.Float(help="time.time() when the job body started")
    ended = fields.Float(help="time.time() when the job body ended")


class Task(models.AbstractModel):
    _name = "workerapp.task"
    _description = "Test jobs"

    def _effect(self, name, started):
        return self.env["workerapp.effect"].create(
            {
                "name": name,
                "job_uuid": self.env.context.get("job_uuid"),
                "pid": os.getpid(),
                "started": started,
                "ended": time.time(),
            }
        )

    def noop(self):
        return None

    def record(self, name):
        self._effect(name, time.time())
        return name

    def sleep_then_record(self, name, seconds):
        started = time.time()
        time.sleep(seconds)
        self._effect(name, started)
        return name

    def write_then_sleep(self, name, seconds):
        self._effect(name, time.time())
        time.sleep(seconds)
        return name

    def fail(self, message):
        raise ValueError(message)

    def retry_soon(self, message):
        raise RetryableJobError(message, seconds=0.2)

    def crash(self):
        os._exit(3)

    def stall_first_run(self, name, marker):
        """The first run writes its pid to ``marker`` and waits to be killed; later runs
        write their effect and finish."""
        path = Path(marker)
        if not path.exists():
            path.write_text(str(os.getpid()))
            time.sleep(120)
        self._effect(name, time.time())
        return name

    def hold_gil(self, marker, seconds):
        """Writes its pid to ``marker``, then sleeps in C without releasing the GIL, as a
        long computation in an extension module does: no thread of its process runs."""
        Path(marker).write_text(str(os.getpid()))
        ctypes.PyDLL(None).sleep(int(seconds))

    def whoami(self, name):
        """Records the user, company and context the job runs with."""
        self.env["workerapp.effect"].create(
            {
                "name": f"{name}:{self.env.uid}:{self.env.company.id}:{self.env.lang}",
                "job_uuid": self.env.context.get("job_uuid"),
                "pid": os.getpid(),
            }
        )

    def log_run_and_sleep(self, path, seconds):
        """Appends ``uuid pid time`` to ``path`` (outside the database, so it survives a
        rollback), writes an effect, then sleeps."""
        with open(path, "a") as log:
            log.write(f"{self.env.context.get('job_uuid')} {os.getpid()} {time.time()}\n")
        self._effect("logged", time.time())
        time.sleep(seconds)

    def commit_itself(self, name):
        """Writes an effect, then tries to commit the job's transaction (refused)."""
        self._effect(name, time.time())
        self.env.cr.commit()

    def record_then_after_commit(self, name, path, fail=False):
        """Writes an effect and registers a post-commit action that appends ``name`` to
        ``path``; then fails if asked (the action must then never run)."""
        self._effect(name, time.time())

        def append():
            with open(path, "a") as out:
                out.write(f"{name}\n")

        self.env.cr.postcommit.add(append)
        if fail:
            raise ValueError(f"{name} fails after registering its action")
        return name

    def lose_connection(self):
        """PostgreSQL: ends the job's own database session, as a server restart would."""
        self.env.cr.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    def back_off_once(self, name, seconds, reason):
        """The first run pauses its channel for ``seconds``; later runs record ``name``."""
        job = self.env["queue.job"].search([("uuid", "=", self.env.context.get("job_uuid"))])
        if not job.backoffs:
            raise ChannelBackoff(seconds, reason)
        return self.record(name)

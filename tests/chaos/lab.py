"""A laboratory of hosts for the chaos tests and the soak: Linux network namespaces made
here, each joined to this machine by a veth pair, and a PostgreSQL instance of our own
(``initdb`` in a temporary folder, run as the ``postgres`` user) listening on the
addresses of those links only. Everything is undone by :meth:`Lab.close`, which is safe
to call after a partial start.

Addresses: host *n* of a lab is ``10.213.S.2`` in its namespace and ``10.213.S.1`` on
this machine's end of its link, where ``S`` is a /24 no interface of this machine uses
yet. The database listens on every ``10.213.S.1``; a host reaches it over its own
link, so dropping the packets of that link (``iptables -j DROP`` at both ends) cuts
that host off and no other (see :meth:`Host.partition`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("JOB_WORKER_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: the apps the workers load (the worker tests' ``workerapp``) and this folder's own
APPS = [Path(__file__).resolve().parent.parent / "apps", Path(__file__).resolve().parent]


class LabError(RuntimeError):
    """The laboratory could not be set up (a command failed): the command and its output."""


def run(*command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise LabError(
            f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
        )
    return done


def missing_tools() -> list[str]:
    """What this machine lacks to build a lab (empty when it can)."""
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if not (PG_BIN / "initdb").exists():
        missing.append(str(PG_BIN / "initdb"))
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("the postgres user")
    return missing


def _free_subnets(count: int) -> list[int]:
    """``count`` third bytes ``S`` such that no interface of this machine holds an address
    in ``10.213.S.0/24``, starting at a place that depends on our pid (runs side by side
    pick different ones)."""
    used = run("ip", "-o", "-4", "addr").stdout
    start = (os.getpid() * 7) % 250
    found: list[int] = []
    for step in range(250):
        candidate = (start + step) % 250 + 1
        if f" 10.213.{candidate}." not in used:
            found.append(candidate)
            if len(found) == count:
                return found
    raise LabError("no free 10.213.S.0/24 subnet left for the lab's links")


@dataclass
class Host:
    """A network namespace and its link to this machine."""

    index: int
    namespace: str
    outer: str  # the veth end on this machine
    inner: str  # the veth end in the namespace
    subnet: int
    cut: bool = False

    @property
    def address(self) -> str:
        """The host's own address (the client address the database sees)."""
        return f"10.213.{self.subnet}.2"

    @property
    def gateway(self) -> str:
        """This machine's end of the host's link: where the host reaches the database."""
        return f"10.213.{self.subnet}.1"

    def partition(self) -> None:
        """Drop every packet in both directions where it arrives (``iptables -j DROP``
        on the INPUT of each end of the link): no reset, no error, the sender's stack
        believes it sent; the link just goes silent. (Dropping where packets leave would
        tell the sending stack, which then retries keepalive probes without counting
        them; ``tc netem`` is not in every kernel.)"""
        run("iptables", "-w", "-I", "INPUT", "-i", self.outer, "-j", "DROP")
        self.cut = True
        run(
            "ip",
            "netns",
            "exec",
            self.namespace,
            "iptables",
            "-w",
            "-I",
            "INPUT",
            "-i",
            self.inner,
            "-j",
            "DROP",
        )

    def heal(self) -> None:
        run("iptables", "-w", "-D", "INPUT", "-i", self.outer, "-j", "DROP", check=False)
        run(
            "ip",
            "netns",
            "exec",
            self.namespace,
            "iptables",
            "-w",
            "-D",
            "INPUT",
            "-i",
            self.inner,
            "-j",
            "DROP",
            check=False,
        )
        self.cut = False


class PostgresInstance:
    """A PostgreSQL server of the lab's own: its folder, its port, its postmaster pid.
    It can be killed and restarted at will; the machine's own server is never touched."""

    def __init__(self, folder: Path, addresses: list[str]):
        self.folder = folder
        self.data = folder / "data"
        self.log_path = folder / "postgres.log"
        self.addresses = addresses
        self.port = _free_port(addresses[0])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def init(self) -> None:
        user = pwd.getpwnam("postgres")
        os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.folder.chmod(0o700)
        done = subprocess.run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
                "--locale=C",
            ],
            user="postgres",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise LabError(f"initdb failed: {done.stderr.strip()}")
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.213.0.0/16 trust\n")

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster (after a crash: with crash recovery) and wait until it
        accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(PG_BIN / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                f"listen_addresses={','.join(self.addresses)}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=32MB",
                "-c",
                "logging_collector=off",
            ],
            user="postgres",
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the whole instance can be killed
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise LabError(f"PostgreSQL exited at start: {self.log_tail()}") from None
                if time.monotonic() > deadline:
                    raise LabError(f"PostgreSQL did not start: {self.log_tail()}") from None
                time.sleep(0.1)  # the server is starting (or recovering): look again

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def crash(self) -> None:
        """SIGKILL the postmaster, as the kernel's OOM killer would; its backends notice
        their postmaster is gone and exit; any left after 10 s are killed too. The next
        :meth:`start` runs crash recovery."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)  # the backends see the postmaster's death on their next wait
        self._kill_group()

    def stop(self) -> None:
        """A fast shutdown (SIGINT): sessions are ended, the server stops cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._kill_group()

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._kill_group()

    def _group_alive(self) -> bool:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _kill_group(self) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the killed processes are being reaped

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def url(self, dbname: str, host: str | None = None) -> str:
        return f"postgresql://postgres@{host or self.addresses[0]}:{self.port}/{dbname}"

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as cnx:
            cnx.execute(f'CREATE DATABASE "{name}"')


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


@dataclass
class Lab:
    """Hosts and a database: build with :meth:`open`, undo with :meth:`close`."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 100000}")
    hosts: list[Host] = field(default_factory=list)
    postgres: PostgresInstance | None = None
    folder: Path | None = None
    workers: list[HostWorker] = field(default_factory=list)

    @classmethod
    def open(cls, hosts: int, with_postgres: bool = True) -> Lab:
        lab = cls()
        try:
            for index, subnet in enumerate(_free_subnets(hosts), start=1):
                lab._add_host(index, subnet)
            if with_postgres:
                lab.folder = Path(tempfile.mkdtemp(prefix="job-worker-lab-"))
                lab.postgres = PostgresInstance(lab.folder, [h.gateway for h in lab.hosts])
                lab.postgres.init()
                lab.postgres.start()
        except BaseException:
            lab.close()
            raise
        return lab

    def _add_host(self, index: int, subnet: int) -> None:
        host = Host(
            index=index,
            namespace=f"jw-lab-{self.tag}-h{index}",
            outer=f"jw{self.tag}h{index}o",
            inner=f"jw{self.tag}h{index}i",
            subnet=subnet,
        )
        run("ip", "netns", "add", host.namespace)
        self.hosts.append(host)  # from here on, close() removes it
        run("ip", "link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
        run("ip", "link", "set", host.inner, "netns", host.namespace)
        run("ip", "addr", "add", f"{host.gateway}/24", "dev", host.outer)
        run("ip", "link", "set", host.outer, "up")
        run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.inner)
        run("ip", "-n", host.namespace, "link", "set", host.inner, "up")
        run("ip", "-n", host.namespace, "link", "set", "lo", "up")

    def start_worker(
        self, host: Host, url: str, args: list[str], log: Path, load: str = "workerapp"
    ) -> HostWorker:
        worker = HostWorker(host, url, args, log, load)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        """Stop every worker, the database, remove links, namespaces and the folder. Each
        step runs even when an earlier one failed."""
        for worker in self.workers:
            worker.close()
        if self.postgres is not None:
            self.postgres.close()
        for host in self.hosts:
            if host.cut:
                host.heal()  # its rule on this machine's INPUT goes with it
            run("ip", "netns", "del", host.namespace, check=False)
            if run("ip", "link", "show", host.outer, check=False).returncode == 0:
                run("ip", "link", "del", host.outer, check=False)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class HostWorker:
    """A real ``job-worker worker`` run in a host's namespace (``ip netns exec`` execs
    it: its pid is the worker's own)."""

    def __init__(self, host: Host, url: str, args: list[str], log: Path, load: str):
        self.host = host
        self.log_path = log
        self._log = log.open("ab")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [*map(str, APPS), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        env.pop("QUEUE_JOB__NO_DELAY", None)
        command = str(Path(sys.executable).parent / "job-worker")
        self.proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                host.namespace,
                command,
                "worker",
                "--database",
                url,
                "--load",
                load,
                *args,
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the worker leads a group: close() leaves nothing behind
        )
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[int]:
        """Every process it started (fork server, executors) and theirs."""
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            try:
                text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            except OSError:
                continue
            children = [int(p) for p in text.split()]
            found.extend(children)
            todo.extend(children)
        return found

    def close(self) -> None:
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self._log.close()

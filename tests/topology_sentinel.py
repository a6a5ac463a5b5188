"""A Redis Sentinel group of the test's own on loopback: 1 master, 1 replica, 3 sentinels.

Every process is a ``redis-server`` started here on a free port, with its configuration
in a temporary directory, and stopped by its pid afterwards (never the shared server on
6379). The sentinels watch the service ``mymaster`` with quorum 2 and call the master
down after 1 s, so killing the master promotes the replica within a few seconds.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from certificates import Certificates
from faults import ServerProcess, answers, free_port

SERVICE = "mymaster"
#: Sentinel's timings: the master is called down after DOWN_AFTER_MS without an answer;
#: a failover attempt that fails is retried after twice FAILOVER_TIMEOUT_MS.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 2000


class Node(ServerProcess):
    """One ``redis-server`` process (a data node or a sentinel) on a free loopback port
    (frozen, thawed, killed and stopped as :class:`faults.ServerProcess`)."""

    def __init__(
        self, binary: str, args: list[str], port: int, log: Path, login: dict[str, Any]
    ) -> None:
        self.port = port
        self.log = log
        #: How a client gets in: ``password``, and the ``ssl_*`` options with TLS.
        self.login = login
        with log.open("ab") as out:
            self.proc = subprocess.Popen([binary, *args], stdout=out, stderr=subprocess.STDOUT)
        if not answers(redis.Redis("127.0.0.1", port, socket_connect_timeout=0.2, **login)):
            self.stop()
            raise RuntimeError(f"redis-server on port {port} did not start (see {log})")

    def client(self) -> redis.Redis:
        return redis.Redis(
            "127.0.0.1", self.port, socket_connect_timeout=1, socket_timeout=2, **self.login
        )


class SentinelGroup:
    """The group; :meth:`start` returns once the replica is in sync and every sentinel
    knows the replica and the two other sentinels (so a failover can start at once).

    With ``password``, the data nodes require it (``requirepass``, ``masterauth``); with
    ``sentinel_password``, so do the sentinels, of their clients and of one another. With
    ``tls``, every process speaks TLS only, replication and sentinel traffic included."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: Certificates | None = None,
    ) -> None:
        self.password = password
        self.sentinel_password = sentinel_password
        self.tls = tls
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.nodes: list[Node] = []
        self.master: Node | None = None
        self.replica: Node | None = None
        self.sentinels: list[Node] = []

    def url(self, db: int = 0, *, scheme: str = "redis+sentinel", auth: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{scheme}://{auth}{hosts}/{SERVICE}/{db}"

    def _login(self, password: str | None) -> dict[str, Any]:
        login: dict[str, Any] = {"password": password}
        if self.tls is not None:
            login.update(ssl=True, ssl_ca_certs=str(self.tls.ca))
        return login

    def data_client(self, port: int, db: int = 0) -> redis.Redis:
        """A plain client of the data node on ``port`` (for checks behind attune's back)."""
        return redis.Redis("127.0.0.1", port, db, socket_timeout=2, **self._login(self.password))

    def _listen(self, port: int) -> list[tuple[str, str]]:
        """The settings for listening on ``port``: plain, or TLS only."""
        if self.tls is None:
            return [("port", str(port))]
        return [
            ("port", "0"),
            ("tls-port", str(port)),
            ("tls-cert-file", str(self.tls.cert)),
            ("tls-key-file", str(self.tls.key)),
            ("tls-ca-cert-file", str(self.tls.ca)),
            ("tls-auth-clients", "no"),
            ("tls-replication", "yes"),  # replicas and sentinels connect over TLS too
        ]

    def _data_node(self, name: str, *extra: str) -> Node:
        port = free_port()
        args = [word for key, value in self._listen(port) for word in (f"--{key}", value)]
        args += ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), *extra]
        if self.password is not None:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        log = self.dir / f"{name}.log"
        node = Node(self.binary, args, port, log, self._login(self.password))
        self.nodes.append(node)
        return node

    def _sentinel(self, index: int, master_port: int) -> Node:
        port = free_port()
        conf = self.dir / f"sentinel-{index}.conf"
        lines = [
            *(f"{key} {value}" for key, value in self._listen(port)),
            "bind 127.0.0.1",
            f"dir {self.dir}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password is not None:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        if self.sentinel_password is not None:
            lines.append(f"requirepass {self.sentinel_password}")
            lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
        conf.write_text("\n".join(lines) + "\n")
        log = self.dir / f"sentinel-{index}.log"
        login = self._login(self.sentinel_password)
        node = Node(self.binary, [str(conf), "--sentinel"], port, log, login)
        self.nodes.append(node)
        return node

    def start(self) -> SentinelGroup:
        try:
            self.master = self._data_node("master")
            self.replica = self._data_node(
                "replica", "--replicaof", "127.0.0.1", str(self.master.port)
            )
            self.sentinels = [self._sentinel(i, self.master.port) for i in range(3)]
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self, timeout: float = 30) -> None:
        assert self.replica is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"the Sentinel group did not settle within {timeout} s (see {self.dir})")

    def _ready(self) -> bool:
        assert self.replica is not None
        with contextlib.closing(self.replica.client()) as replica:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        for node in self.sentinels:
            with contextlib.closing(node.client()) as sentinel:
                state: Any = sentinel.sentinel_master(SERVICE)
                if state.get("num-other-sentinels") != 2 or state.get("num-slaves") != 1:
                    return False
        return True

    def master_port(self) -> int | None:
        """The master's port as every sentinel names it now (None if they differ).

        Read from ``SENTINEL MASTER``, as clients are (``GET-MASTER-ADDR-BY-NAME`` names the
        replica being promoted already, before the failover has ended)."""
        ports = set()
        for node in self.sentinels:
            with contextlib.closing(node.client()) as sentinel:
                try:
                    state: Any = sentinel.sentinel_master(SERVICE)
                except redis.RedisError:
                    return None
                ports.add(int(state["port"]))
        return ports.pop() if len(ports) == 1 else None

    def kill_master(self) -> None:
        """SIGKILL the master process by its pid."""
        assert self.master is not None
        self.master.kill()

    def wait_for_promotion(self, old_port: int, timeout: float = 30) -> float:
        """Block until the sentinels name a master other than ``old_port`` and it accepts
        writes; returns ``time.monotonic()`` then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self.master_port()
            if port is not None and port != old_port:
                client = self.data_client(port)
                with (
                    contextlib.closing(client) as node,
                    contextlib.suppress(redis.RedisError),
                ):
                    if node.info("replication").get("role") == "master":
                        return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"no replica was promoted within {timeout} s (see {self.dir})")

    def stop(self) -> None:
        """Stop every process of the group by its pid (sentinels first)."""
        for node in reversed(self.nodes):
            node.stop()
        self.nodes = []


@contextlib.contextmanager
def sentinel_group(
    directory: Path,
    *,
    password: str | None = None,
    sentinel_password: str | None = None,
    tls: Certificates | None = None,
) -> Iterator[SentinelGroup]:
    group = SentinelGroup(
        directory, password=password, sentinel_password=sentinel_password, tls=tls
    ).start()
    try:
        yield group
    finally:
        group.stop()

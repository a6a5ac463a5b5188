"""A 3-master Redis Cluster on loopback, of this process's own (tests and benchmarks).

:class:`LocalCluster` starts one ``redis-server --cluster-enabled yes`` per master on
free ports, joins them with ``redis-cli --cluster create`` (no replicas), waits until
every node reports ``cluster_state:ok``, and stops the servers by pid (also when the
start fails half-way; a node frozen with :meth:`LocalCluster.freeze` is sent SIGCONT
first). Nothing here touches the shared Redis on 6379.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from certificates import make_certificates
from faults import answers, free_port
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

MASTERS = 3
#: A cluster node also listens on its port + 10000 (the cluster bus).
BUS_OFFSET = 10_000


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free and valid too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port


def cluster_tools() -> tuple[str, str] | None:
    """``(redis-server, redis-cli)`` if both are installed, else None."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


class LocalCluster:
    """``masters`` cluster nodes on free loopback ports, in a temporary directory; with
    ``password``, every node requires it (``requirepass``); with ``tls``, nodes speak TLS
    only, clients and cluster bus alike (certificates made by :func:`make_certificates`;
    clients are not asked for one); with ``replicas``, each master has that many;
    ``node_timeout_ms`` is every node's ``cluster-node-timeout`` (how long a node may be
    silent before the others mark it failed)."""

    def __init__(
        self,
        masters: int = MASTERS,
        password: str | None = None,
        tls: bool = False,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
    ) -> None:
        tools = cluster_tools()
        if tools is None:
            raise RuntimeError("redis-server and redis-cli are needed for a Redis Cluster")
        self.server, self.cli = tools
        self.ports = [cluster_port() for _ in range(masters * (1 + replicas))]
        self.replicas = replicas
        self.password = password
        self.tls = tls
        self.node_timeout_ms = node_timeout_ms
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        #: Ports of the nodes stopped with SIGSTOP (see :meth:`freeze`).
        self.frozen: set[int] = set()
        self._dir = tempfile.TemporaryDirectory(prefix="attune-cluster-")
        self.dir = Path(self._dir.name)
        if tls:
            make_certificates(self.dir)

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming every node as a seed."""
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"{self._scheme}://{self._auth}{nodes}{self._query}"

    def seed_url(self, index: int = 0) -> str:
        """A URL naming one node only (the client discovers the others)."""
        return f"{self._scheme}://{self._auth}127.0.0.1:{self.ports[index]}{self._query}"

    @property
    def _scheme(self) -> str:
        return "rediss+cluster" if self.tls else "redis+cluster"

    @property
    def _query(self) -> str:
        if not self.tls:
            return ""
        return f"?ssl_cert_reqs=required&ssl_ca_certs={self.dir / 'ca.crt'}"

    @property
    def _auth(self) -> str:
        return "" if self.password is None else f"default:{self.password}@"

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",  # the name the TLS certificate is for
            port=port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=5,
            retry=Retry(NoBackoff(), 0),  # the callers loop themselves
            **self._tls_client,
        )

    @property
    def _tls_client(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.dir / "ca.crt")}

    def start(self) -> LocalCluster:
        try:
            for port in self.ports:
                self._spawn(port)
            for port in self.ports:
                if self.procs[port].poll() is not None or not answers(self.client(port)):
                    raise RuntimeError(f"cluster node on port {port} did not start")
            subprocess.run(
                [self.cli, "--cluster", "create"]
                + [f"127.0.0.1:{p}" for p in self.ports]
                + ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
                + ([] if self.password is None else ["-a", self.password, "--no-auth-warning"])
                + ([] if not self.tls else ["--tls", "--cacert", str(self.dir / "ca.crt")]),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> None:
        directory = self.dir
        if self.tls:
            listen = [
                "--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                "--tls-cert-file", str(directory / "server.crt"),
                "--tls-key-file", str(directory / "server.key"),
                "--tls-ca-cert-file", str(directory / "ca.crt"),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        else:
            listen = ["--port", str(port)]
        self.procs[port] = subprocess.Popen(
            [
                self.server,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(directory / f"nodes-{port}.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                *listen,
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                *([] if self.password is None else ["--requirepass", self.password]),
                *([] if self.password is None else ["--masterauth", self.password]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok`` (RuntimeError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        pending = [p for p in self.ports if p in self.procs]
        while pending:
            port = pending[0]
            client = self.client(port)
            try:
                if client.cluster("info").get("cluster_state") == "ok":
                    pending.pop(0)
                    continue
            except redis.RedisError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {port} did not reach cluster_state:ok")
            time.sleep(0.05)

    def freeze(self, port: int) -> None:
        """SIGSTOP one node: its connections stay open and nothing answers (a hung node, or
        one behind a partition that drops packets). :meth:`thaw` and :meth:`stop` resume it."""
        os.kill(self.procs[port].pid, signal.SIGSTOP)
        self.frozen.add(port)

    def thaw(self, port: int) -> None:
        """SIGCONT a node stopped by :meth:`freeze`."""
        if port in self.frozen:
            os.kill(self.procs[port].pid, signal.SIGCONT)
            self.frozen.discard(port)

    def kill(self, port: int) -> None:
        """SIGKILL one node (its slots are served by nobody: no replicas)."""
        self.thaw(port)
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(timeout=5)

    def master_of(self, key: bytes) -> int:
        """The port of the master serving ``key``'s slot, as a live node sees it."""
        slot = key_slot(key)
        client = self.client(next(iter(self.procs)))
        try:
            for low, high, master, *_ in client.cluster("slots"):
                if low <= slot <= high:
                    return int(master[1])
        finally:
            client.close()
        raise RuntimeError(f"no master serves slot {slot}")

    def restart(self, port: int) -> None:
        """Start a killed node again on its port: it reads its nodes-<port>.conf, so it
        rejoins with the same slots (and no data: nothing is saved)."""
        self._spawn(port)
        if self.procs[port].poll() is not None or not answers(self.client(port)):
            raise RuntimeError(f"cluster node on port {port} did not restart")

    def stop(self) -> None:
        """Stop every node by its pid (SIGTERM, SIGKILL after 5 s), remove the directory."""
        for port in list(self.procs):
            self.thaw(port)
            proc = self.procs.pop(port)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._dir.cleanup()


@contextmanager
def local_cluster(
    masters: int = MASTERS,
    password: str | None = None,
    tls: bool = False,
    replicas: int = 0,
    node_timeout_ms: int = 2000,
) -> Iterator[LocalCluster]:
    cluster = LocalCluster(masters, password, tls, replicas, node_timeout_ms).start()
    try:
        yield cluster
    finally:
        cluster.stop()

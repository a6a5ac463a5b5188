"""Fault injection for the tests: Redis servers of our own, and a proxy that loses replies.

Everything here runs on loopback ports picked free at start. A :class:`RedisProcess`
is a ``redis-server`` this test started itself; it is stopped by its pid (never the
shared server on 6379). A :class:`ReplyDroppingProxy` forwards a client's commands to
a server but, once told to, swallows the server's replies: the command executes, the
reply never arrives (what a dropped connection or a partition does to a client).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(client: redis.Redis) -> bool:
    """Whether a freshly started server answers ``client`` within 5 s (the client is
    closed after)."""
    try:
        for _ in range(200):
            try:
                client.ping()
                return True
            except redis.ConnectionError:
                time.sleep(0.025)
        return False
    finally:
        client.close()


class ServerProcess:
    """A server process of a test's own, stopped by pid: frozen, thawed, killed or
    stopped (``proc`` is set by whoever starts it)."""

    proc: subprocess.Popen[bytes] | None = None
    frozen = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Stop it (SIGCONT first if frozen, then SIGTERM, SIGKILL after 5 s)."""
        if self.proc is None:
            return
        if self.frozen:
            self.thaw()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: it vanishes without closing its connections cleanly."""
        if self.proc is None:
            return
        if self.frozen:
            self.thaw()
        self.proc.kill()
        self.proc.wait(timeout=5)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung or partitioned node)."""
        os.kill(self.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.frozen = False


class RedisProcess(ServerProcess):
    """A ``redis-server`` of this test's own on a free loopback port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = port if port is not None else free_port()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisProcess:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.frozen = False
        if answers(redis.Redis(port=self.port, socket_connect_timeout=0.2)):
            return self
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def restart(self) -> None:
        """Stop and start again on the same port (its data is gone: nothing is saved)."""
        self.stop()
        self.start()

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db)


@contextmanager
def redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


class ReplyDroppingProxy:
    """A TCP proxy to ``127.0.0.1:target_port`` on a thread of its own.

    ``drop_replies = True`` makes it swallow whatever the server sends back from then
    on (the commands still reach the server and run). ``drop_next_reply()`` swallows
    only the next chunk the server sends, then forwards again. ``silent = True``
    swallows traffic both ways: the server never sees the commands (unlike a frozen
    server, which runs them from its buffer on thaw). ``cut()`` closes every
    connection it carries.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.drop_replies = False
        self.silent = False
        self._drop_next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reply-proxy", daemon=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> ReplyDroppingProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def drop_next_reply(self, count: int = 1) -> None:
        with self._lock:
            self._drop_next += count

    def _take_drop(self) -> bool:
        with self._lock:
            if self.drop_replies:
                return True
            if self._drop_next > 0:
                self._drop_next -= 1
                return True
            return False

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = int(self._server.sockets[0].getsockname()[1])
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            try:
                while data := await src.read(65536):
                    if self.silent or (replies and self._take_drop()):
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))

    def cut(self) -> None:
        """Close every connection through the proxy (clients see a reset); returns once
        their sockets are closed, so a client's next command meets the closed connection."""

        async def close_all() -> None:
            writers, self._writers = self._writers, []
            for w in writers:
                w.close()
            for w in writers:
                with contextlib.suppress(OSError):
                    await w.wait_closed()

        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    def stop(self) -> None:
        def shutdown() -> None:
            for w in self._writers:
                w.close()
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(shutdown)
            self._thread.join(10)
        self._loop.close()


@contextmanager
def reply_dropping_proxy(target_port: int) -> Iterator[ReplyDroppingProxy]:
    proxy = ReplyDroppingProxy(target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()

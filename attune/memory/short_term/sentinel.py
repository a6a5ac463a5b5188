"""The client of a Redis Sentinel deployment: the master Sentinel names, followed
through failovers.

``redis+sentinel://`` URLs (:mod:`.sentinel_url`) give a ``redis.asyncio`` client from
:meth:`Sentinel.master_for`. Its :class:`~redis.asyncio.sentinel.SentinelConnectionPool`
asks the sentinels for the master's address whenever it opens a connection, and drops
its idle connections when that address changed. So after a failover:

* a pooled connection to the dead master fails at the connection level (reset, refused);
  one to a master since demoted to replica answers ``READONLY``, which the pool's
  connection turns into a ``ConnectionError`` after disconnecting itself. Either is a
  failure :func:`.autopipeline.is_reconnectable` accepts: the idle connections are
  dropped and a command safe to repeat is sent once more, on a connection that asks the
  sentinels again. Other commands fail with ``ShortTermUnavailableError`` (never blindly
  retried); the caller decides.
* While the sentinels still name the old master, or none (``MasterNotFoundError``: the
  master is down and not yet replaced), every operation fails with
  ``ShortTermUnavailableError``; the same client works again once a replica is promoted.
* A master replaced while it still runs (``SENTINEL FAILOVER``, a partition that heals)
  keeps accepting writes until Sentinel demotes it, about 10 s later, and a pooled
  connection to it would keep writing there (writes then lost). So the pool asks the
  sentinels again, in the background, at most every :data:`FOLLOW_INTERVAL_S` while it
  is used, and a connection to a node that is no longer the master is reconnected,
  through the sentinels, before its next command (:class:`FollowingPool`). Writes
  acknowledged by the old master in the meantime are still lost: Sentinel's replication
  is asynchronous.
* Sentinels that hang, are cut off or refuse never hold up a command while the master
  the pool knows answers: that question is asked in the background, and its failure
  leaves things as they are.

The sentinels are asked all at once (:func:`discover`), each with short timeouts
(``redis_connect_timeout`` for connecting and for its answer) and without redis-py's own
retries, and the first valid answer is taken; a question that finds no master within
``redis_connect_timeout`` as a whole fails with ``MasterNotFoundError`` naming each
sentinel's failure. An answer on an older configuration (``config-epoch``) than one
already followed is taken only if no newer one comes, so a sentinel that has not heard of
a failover yet does not send the pool back to the old master.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from attune.errors import ConfigurationError
from attune.memory.sentinel_url import SentinelURL, is_sentinel_url, parse_sentinel_url

__all__ = [
    "Sentinel",
    "SentinelURL",
    "close_sentinel",
    "is_sentinel_url",
    "master_client",
    "master_report",
    "sentinel_target",
    "topology_message",
]


#: How often a pool in use asks the sentinels which node is the master (seconds).
FOLLOW_INTERVAL_S = 1.0

#: What redis-py's sentinel-managed connection raises on ``READONLY`` from the node it took
#: for the master (it disconnects first, so the next connection asks the sentinels again).
_DEMOTED = "The previous master is now a slave"


class FollowingPool(SentinelConnectionPool):
    """A master's pool that notices a new master within :data:`FOLLOW_INTERVAL_S` even
    while the old one still answers, without ever making a command wait on the sentinels
    while it knows a master (see the module docstring)."""

    def __init__(self, *args: Any, discovery_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._asked_at = -math.inf
        self._limit_s = discovery_timeout
        #: The highest ``config-epoch`` a sentinel named a master with: an answer with a
        #: lower one (a sentinel that has not heard of a failover yet) is followed only
        #: if no sentinel gives a newer one (see :func:`discover`).
        self._epoch = [-1]
        #: The follow-up question in the background, and sentinels still answering one.
        self._follow: asyncio.Task[None] | None = None
        self._leftovers: set[asyncio.Task[Any]] = set()

    async def get_master_address(self) -> tuple[str, int]:
        """The master the sentinels name now (all asked at once, within the discovery
        timeout); idle connections are dropped if it changed."""
        address = await discover(
            self.sentinel_manager, self.service_name, self._limit_s, self._epoch, self._leftovers
        )
        self._asked_at = time.monotonic()
        if self.master_address != address:
            self.master_address = address
            # Idle connections reconnect, through the sentinels, when next used.
            await self.disconnect(inuse_connections=False)
        return address

    async def _ask_quietly(self) -> None:
        # Sentinels that do not answer leave things as they are: the master may well be fine.
        with contextlib.suppress(redis_errors.RedisError, OSError):
            await self.get_master_address()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        now = time.monotonic()
        if (
            self.master_address is not None
            and now - self._asked_at >= FOLLOW_INTERVAL_S
            and (self._follow is None or self._follow.done())
        ):
            # Asked in the background: a command never waits for sentinels that are slow
            # or gone while the master it knows answers.
            self._asked_at = now
            self._follow = asyncio.get_running_loop().create_task(self._ask_quietly())
        connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
            *args, **kwargs
        )
        peer = (getattr(connection, "host", None), getattr(connection, "port", None))
        master = self.master_address
        if master is not None and connection.is_connected and peer != master:
            # Reconnected here, through the sentinels: a command on a disconnected
            # connection would reconnect by itself, but to the address it had.
            try:
                await connection.disconnect()
                await connection.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                await self.release(connection)
                raise
        return connection

    async def disconnect(self, inuse_connections: bool = True) -> None:
        if inuse_connections:  # the pool is closed: so are its questions to the sentinels
            tasks = [t for t in (self._follow, *self._leftovers) if t is not None]
            self._follow = None
            for task in tasks:
                task.cancel()
            if tasks and asyncio.current_task() not in tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        await super().disconnect(inuse_connections)


async def discover(
    sentinel: Sentinel,
    service: str,
    limit_s: float,
    epoch: list[int] | None = None,
    leftovers: set[asyncio.Task[Any]] | None = None,
) -> tuple[str, int]:
    """The master's address for ``service``: every sentinel asked at once, the first
    valid answer taken (a sentinel that hangs, refuses or is gone never delays the
    others), within ``limit_s`` seconds as a whole; else ``MasterNotFoundError`` naming
    each sentinel's failure (as redis-py's ``Class(...)``).

    ``epoch`` (a one-item list) holds the highest ``config-epoch`` followed so far: while
    other sentinels may still answer, an answer with a lower one (a sentinel that has not
    heard of a failover yet) waits; it is taken only if no newer one comes (sentinels
    reset, say). Questions still open once answered are left to finish in ``leftovers``
    (their connections kept), else cancelled."""
    failures: list[str] = []
    stale: list[tuple[int, tuple[str, int]]] = []

    async def ask(client: aioredis.Redis) -> tuple[int, tuple[str, int]] | None:
        try:
            masters: Any = await client.sentinel_masters()
        except (redis_errors.RedisError, OSError) as exc:
            failures.append(f"{client} - {exc!r}")
            return None
        state = masters.get(service)
        if not state or not sentinel.check_master_state(state, service):
            return None
        return int(state.get("config-epoch") or 0), (str(state["ip"]), int(state["port"]))

    tasks = [asyncio.ensure_future(ask(client)) for client in sentinel.sentinels]
    try:
        async with asyncio.timeout(limit_s):
            for next_answer in asyncio.as_completed(tasks):
                answer = await next_answer
                if answer is None:
                    continue
                if epoch is not None and answer[0] < epoch[0]:
                    stale.append(answer)
                    continue
                if epoch is not None:
                    epoch[0] = answer[0]
                return answer[1]
    except TimeoutError:
        failures.append(f"no answer within {limit_s!r} s")
    finally:
        for task in tasks:
            if task.done():
                continue
            if leftovers is None:
                task.cancel()
            else:
                leftovers.add(task)
                task.add_done_callback(leftovers.discard)
    if stale and epoch is not None:  # every sentinel that answered is on an older config
        newest = max(stale)
        epoch[0] = newest[0]
        return newest[1]
    detail = f" : {', '.join(failures)}" if failures else ""
    raise MasterNotFoundError(f"No master found for {service!r}{detail}")


def sentinel_target(url: str) -> SentinelURL | None:
    """The parsed sentinel URL, None for any other URL, :class:`ConfigurationError` for a
    bad sentinel URL (never echoing its passwords)."""
    if not is_sentinel_url(url):
        return None
    try:
        return parse_sentinel_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"invalid REDIS_URL: {exc}") from None


def _tls(target: SentinelURL) -> dict[str, Any]:
    return {"ssl": True, **dict(target.tls_options)} if target.tls else {}


def master_client(target: SentinelURL, connect_timeout: float) -> tuple[aioredis.Redis, Sentinel]:
    """A client of ``target``'s master, and the :class:`Sentinel` it asks (close both).

    Nothing connects here. Data-node connections have no per-read timeout, as a plain
    ``redis://`` client of the store has (each round trip is bounded as a whole)."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": connect_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        **_tls(target),
    }
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    client: aioredis.Redis = sentinel.master_for(
        target.service,
        connection_pool_class=FollowingPool,
        discovery_timeout=connect_timeout,
        db=target.db,
        username=target.username,
        password=target.password,
        socket_connect_timeout=connect_timeout,
        socket_timeout=None,
        health_check_interval=30,
        **_tls(target),
    )
    return client, sentinel


async def close_sentinel(sentinel: Sentinel) -> None:
    """Close the clients of the sentinels (``Sentinel.aclose`` is newer than redis 5.0)."""
    for client in sentinel.sentinels:
        await client.aclose()


async def master_report(target: SentinelURL, sentinel: Sentinel, limit_s: float) -> dict[str, Any]:
    """What a health report says of the deployment: the mode, the service, the sentinels
    and the master they name now (``None`` with ``master_error`` if none, or if the
    sentinels do not answer within ``limit_s`` seconds); no password. Never raises."""
    report: dict[str, Any] = {
        "mode": "sentinel",
        "service": target.service,
        "sentinels": target.addresses,
    }
    try:
        host, port = await discover(sentinel, target.service, limit_s)
    except (redis_errors.RedisError, OSError) as exc:
        report.update(master=None, master_error=type(exc).__name__)
    else:
        report["master"] = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return report


def topology_message(exc: BaseException, where: str, target: SentinelURL | None) -> str | None:
    """The message for a failure that says the topology is changing (no master known, a
    node that is no longer the master), else None. ``where`` is the redacted URL."""
    if isinstance(exc, MasterNotFoundError) and "AuthenticationError" in str(exc):
        # redis-py collects each sentinel's failure into the message, as ``Class(...)``.
        return (
            f"short-term memory unavailable: the sentinels of {where} refused the "
            "credentials; check the sentinel_password (and sentinel_username) option of "
            "REDIS_URL: the sentinels' password, apart from the data nodes' one in the "
            "user part"
        )
    if isinstance(exc, MasterNotFoundError) and "NoPermissionError" in str(exc):
        return (
            f"short-term memory unavailable: the sentinels of {where} refused to name the "
            "master to the ACL user of REDIS_URL's sentinel_username option: allow it "
            "SENTINEL MASTERS on every sentinel (ACL SETUSER <user> +sentinel|masters); "
            "long-term memory keeps working."
        )
    if isinstance(exc, MasterNotFoundError) and target is not None:
        return (
            f"short-term memory unavailable: the sentinels {target.addresses} name no "
            f"reachable master for service {target.service!r} (a failover may be under "
            "way; operations resume on their own once a replica is promoted). If this "
            "lasts, check that the sentinels run and monitor that service name "
            f"(REDIS_URL {where}); long-term memory keeps working."
        )
    if _not_a_writable_master(exc):
        return (
            f"short-term memory unavailable: Redis at {where} is not a writable master "
            f"right now ({type(exc).__name__}); nothing was changed by the command. A "
            "failover may be under way: retry shortly, or point REDIS_URL at the master "
            "(a redis+sentinel:// URL follows it); long-term memory keeps working."
        )
    return None


def _not_a_writable_master(exc: BaseException) -> bool:
    """Whether ``exc`` says the node is not (or no longer) a master that takes writes."""
    if isinstance(exc, (redis_errors.ReadOnlyError, redis_errors.MasterDownError)):
        return True
    if isinstance(exc, redis_errors.ResponseError):
        return str(exc).startswith("NOREPLICAS")
    # A sentinel-managed connection's READONLY, after it disconnected (redis-py's text).
    return isinstance(exc, redis_errors.ConnectionError) and str(exc) == _DEMOTED

"""Who a command acts as, and the run's environment, from the global options.

``--user`` and ``--tier`` name the agent a command acts as. Each command has its own
default tier, the one it had before the options existed (reads OBSERVER, working data and
staging CONTRIBUTOR, promote/reject VALIDATOR, deletion and administration STEWARD);
``--tier`` replaces it, and the library's access check decides: a tier too low for the
command is the library's :class:`~attune.errors.AccessDeniedError` (exit 2), before any
write. ``--storage-dir``, ``--redis-url`` and ``--env`` set ``ATTUNE_STORAGE_DIR``,
``REDIS_URL`` and ``ATTUNE_ENV`` for this run only (restored when the command ends).

The ``type=`` functions here turn bad option values into argparse errors (exit 2, a
message naming the option) before anything runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from attune.cli import arguments
from attune.errors import AccessDeniedError, ValidationError
from attune.memory import validation
from attune.memory.types import AccessTier, Classification

_T = TypeVar("_T")

#: The agent the command acts as without ``--user``.
DEFAULT_USER = "attune-cli"
#: ``--env`` values (the deployment tiers of :class:`~attune.memory.config.Environment`).
ENVIRONMENTS = ("development", "staging", "production")
TIERS = ", ".join(tier.name for tier in AccessTier)

#: Global option -> the environment variable it sets for the run.
_ENVIRONMENT = {
    "storage_dir": "ATTUNE_STORAGE_DIR",
    "redis_url": "REDIS_URL",
    "env": "ATTUNE_ENV",
}


def tier_option(value: str) -> AccessTier:
    """``--tier``: a tier's name in any case (or its number)."""
    try:
        return AccessTier.parse(int(value) if value.strip().isdigit() else value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"invalid access tier: use one of {TIERS}") from None


def user_option(value: str) -> str:
    """``--user``: an agent id the library accepts."""
    if validation.has_surrogate(value):  # bytes the locale could not decode
        raise argparse.ArgumentTypeError(arguments.undecodable_message())
    try:
        return validation.check_agent_id(value)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def classification_option(value: str) -> Classification:
    try:
        return Classification.parse(value)
    except ValidationError:
        names = ", ".join(c.name for c in Classification)
        raise argparse.ArgumentTypeError(f"invalid classification: use one of {names}") from None


def json_object_option(value: str) -> dict[str, Any]:
    """A JSON object given on the command line (``--metadata``, ``--data``)."""
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
        parsed = None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(
            'not a JSON object: write it as {"name": "value", ...} (quoted for the shell)'
        )
    return parsed


@contextlib.contextmanager
def run_environment(args: argparse.Namespace) -> Iterator[None]:
    """The environment variables the global options set, for the length of the command."""
    saved = {name: os.environ.get(name) for name in _ENVIRONMENT.values()}
    try:
        for option, name in _ENVIRONMENT.items():
            value = getattr(args, option, None)
            if value:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tier(args: argparse.Namespace, default: AccessTier) -> AccessTier:
    chosen: AccessTier | None = getattr(args, "tier", None)
    return default if chosen is None else chosen


def user(args: argparse.Namespace, default: str = DEFAULT_USER) -> str:
    chosen: str | None = getattr(args, "user", None)
    return default if chosen is None else chosen


def require_steward(args: argparse.Namespace, action: str) -> None:
    """Administration that acts as no agent (``db upgrade``, ``migrate``, ``keys reroot``):
    run as the operator, but an explicit ``--tier`` below STEWARD is refused as the
    library refuses it (:class:`~attune.errors.AccessDeniedError`), before any work."""
    chosen: AccessTier | None = getattr(args, "tier", None)
    if chosen is not None and chosen < AccessTier.STEWARD:
        raise AccessDeniedError(action, chosen.name, AccessTier.STEWARD.name)


def memory(args: argparse.Namespace, default_tier: AccessTier, namespace: str | None = None) -> Any:
    """The :class:`~attune.memory.UnifiedMemory` of the agent this command acts as (use it
    in a ``with``)."""
    from attune.memory import UnifiedMemory

    return UnifiedMemory(user(args), access_tier=tier(args, default_tier), namespace=namespace)


def async_memory(
    args: argparse.Namespace, default_tier: AccessTier, namespace: str | None = None
) -> Any:
    """The :class:`~attune.memory.AsyncUnifiedMemory` of the same agent (``async with``),
    for work run by :func:`interruptible`."""
    from attune.memory.unified import AsyncUnifiedMemory

    return AsyncUnifiedMemory(user(args), access_tier=tier(args, default_tier), namespace=namespace)


def interruptible(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to its end on an event loop of its own. Ctrl-C cancels it, and its
    cleanup runs (an export's temporary file, a migration's copy of every record are
    deleted) before :class:`KeyboardInterrupt` reaches :func:`attune.cli.main`; through the
    blocking facade, Ctrl-C would end the command with the work still pending, its files
    left behind. (Called inside a running loop, by a program embedding :func:`main`, it
    runs through the facade's runner instead.)"""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None:
        return asyncio.run(work)
    from attune._runner import run_sync

    return run_sync(work)

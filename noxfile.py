"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]


@nox.session
def tests(session: nox.Session) -> None:
    # asyncpg: the conformance suite runs the PostgreSQL store too (skipped without a server).
    session.install("-e", ".[test,postgres]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
@nox.parametrize("version", ["0.20.0", "0.21.0"])
def aiosqlite(session: nox.Session, version: str) -> None:
    """The store on the older aiosqlite releases the pin admits (CI tests the newest)."""
    session.install("-e", ".[test]", f"aiosqlite=={version}")
    files = [
        "tests/test_long_term.py",
        "tests/test_audit_outbox.py",
        "tests/test_audit_atomicity.py",
        "tests/test_sync_facade.py",
        "tests/test_facade_resources.py",
    ]
    session.run("python", "-m", "pytest", *files, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "attune", "attune_llm", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "attune", "attune_llm", "tests", "benchmarks")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Every benchmark next to its baseline; needs Redis (``nox -s benchmarks -- --quick``)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def profile(session: nox.Session) -> None:
    """Where persist / recall spend their time, per thread (py-spy; needs ptrace rights)."""
    session.install("-e", ".[profile]")
    session.run("python", "benchmarks/profile_ops.py", *session.posargs)

"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s typecheck``, ``nox -s docs``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "docs"]


@nox.session
def tests(session: nox.Session) -> None:
    # asyncpg: the conformance suite runs the PostgreSQL store too (skipped without a server).
    # docs: tests/test_docs_site.py builds the site (it skips without mkdocs, fails in CI).
    session.install("-e", ".[test,postgres,docs]")
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
    session.run("ruff", "check", "attune", "attune_llm", "tests", "benchmarks", "tools")
    session.run("ruff", "format", "--check", "attune", "attune_llm", "tests", "benchmarks", "tools")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")
    session.run("mypy", "--strict", "tools/mkdocs_hooks.py")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, strict, into site/ (``mkdocs serve`` to read it while editing)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


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

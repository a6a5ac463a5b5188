"""No secret or personal value reaches an error message, a log record or the audit log.

Every secret and PII case of a freshly generated corpus (``detection_corpus.py``; the seed
is printed in every failure, ``DETECTION_SEED=<n>`` replays one) goes through every write
path: ``persist_pattern`` (as content and as metadata), ``stage_pattern`` (as content and as
a field), ``promote_pattern`` of what was staged, and, as a wrong argument, into the checks
that refuse a bad pattern type, pattern id or namespace. Everything a caller or an operator
could read is collected: results, exception messages (and their notes), every log record,
and the audit log's files. None may hold the value.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import detection_corpus as dc
import pytest

from attune.errors import AttuneError
from attune.memory import AsyncUnifiedMemory, MemoryConfig
from attune.memory.security.pipeline import close_shared

SEED = int(os.environ.get("DETECTION_SEED") or random.SystemRandom().randrange(2**32))
#: Values shorter than this could appear in an audit line by chance (a digit run of a
#: timestamp, a hex digest): they are left out of the check.
MIN_VALUE_LENGTH = 8


def _audit_text(storage: Path) -> str:
    """Every audit log file of ``storage`` (rotated ones too), as text."""
    files = sorted(p for p in storage.glob("audit.jsonl*") if p.is_file())
    return b"".join(p.read_bytes() for p in files).decode("utf-8", "replace")


def _said(exc: BaseException) -> str:
    return " ".join([str(exc), repr(exc), *getattr(exc, "__notes__", [])])


async def _through_every_path(
    case: dc.Case, writer: AsyncUnifiedMemory, validator: AsyncUnifiedMemory
) -> list[str]:
    """What the write paths told their caller about ``case``'s text."""
    told: list[str] = []
    text = case.text
    for call in (
        lambda: writer.persist_pattern(text, "note"),
        lambda: writer.persist_pattern("A note", "note", metadata={"field": text}),
        lambda: writer.persist_pattern("A note", text),  # a bad pattern type
        lambda: writer.recall_pattern(text),  # a bad pattern id
        lambda: writer.search_patterns("note", namespace=text),  # a bad namespace
    ):
        try:
            told.append(repr(await call()))
        except AttuneError as exc:
            told.append(_said(exc))
    for data in ({"content": text}, {"content": "A staged note", "field": text}):
        try:
            staged = await writer.stage_pattern(data, "note")
        except AttuneError as exc:
            told.append(_said(exc))
            continue
        try:
            told.append(repr(await validator.promote_pattern(staged)))
        except AttuneError as exc:
            told.append(_said(exc))
    return told


async def test_no_value_of_the_corpus_reaches_a_message_a_log_or_the_audit_log(
    mock_config: MemoryConfig, caplog: pytest.LogCaptureFixture
) -> None:
    cases = [
        c
        for c in dc.generate(SEED, per_cell=1)
        if c.family in ("secret", "pii") and len(c.value) >= MIN_VALUE_LENGTH
    ]
    assert len(cases) > 200, f"seed {SEED}: the corpus is too small to mean anything"
    caplog.set_level(logging.DEBUG)
    told: list[tuple[dc.Case, str]] = []
    async with (
        AsyncUnifiedMemory("writer", mock_config) as writer,
        AsyncUnifiedMemory("validator", mock_config, access_tier="VALIDATOR") as validator,
    ):
        for case in cases:
            told += [(case, t) for t in await _through_every_path(case, writer, validator)]
    close_shared()
    audit = _audit_text(Path(mock_config.storage_dir))
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    leaks: list[str] = []
    for case in cases:
        where = [
            place
            for place, text in (("audit log", audit), ("log records", logs))
            if case.value in text
        ]
        where += ["a result or error" for c, t in told if c is case and case.value in t]
        if where:
            leaks.append(f"{case.family} {case.kind} in {case.container}: {sorted(set(where))}")
    assert not leaks, f"seed {SEED}: {len(leaks)} values leaked, e.g. {leaks[:5]}"
